#!/usr/bin/env bash
# Runs `xjob-bench --quick` and checks what it wrote (no timing thresholds):
# the exit status, results.csv with a line per row, results.json with the
# machine's description and, for every workload, correct xjob, baseline and
# joblib rows whose numbers are finite and positive, and three PNG plots.
set -euo pipefail
bench="$1"
out="${TEST_TMPDIR:-$(mktemp -d)}/results"
python=/usr/bin/python3

start=$(date +%s)
"$bench" --quick --out-dir "$out" --python "$python" >"$out.log" 2>&1 || {
  status=$?
  cat "$out.log"
  echo "xjob-bench --quick exited with $status" >&2
  exit 1
}
echo "xjob-bench --quick took $(($(date +%s) - start)) s"
grep -q "== Summary" "$out.log" || { cat "$out.log"; echo "no summary table on stdout" >&2; exit 1; }

for f in results.csv results.json throughput_vs_njobs.png dispatch_cost.png summary.png; do
  [[ -s "$out/$f" ]] || { ls -l "$out"; echo "missing or empty: $f" >&2; exit 1; }
done
for f in throughput_vs_njobs.png dispatch_cost.png summary.png; do
  [[ "$(head -c 8 "$out/$f" | od -An -tx1 | tr -d ' \n')" == 89504e470d0a1a0a ]] || { echo "$f is not a PNG" >&2; exit 1; }
done

"$python" - "$out" <<'PY'
import csv, json, math, sys
out = sys.argv[1]
data = json.load(open(f"{out}/results.json"))
def fail(msg):
    sys.exit(f"results.json: {msg}")
for key in ("cpu", "cpus", "memory_gib", "kernel", "compiler", "flags"):
    if not str(data["machine"].get(key, "")).strip():
        fail(f"machine description lacks {key}")
if data["preset"] != "quick":
    fail(f"preset is {data['preset']}")
names = [w["name"] for w in data["workloads"]]
want = ["map", "rowreduce", "sumsq", "md5", "tiny", "sleep", "npy"]
if names != want:
    fail(f"workloads {names}, expected {want}")
rows = data["rows"]
for r in rows:
    if not r["ok"]:
        fail(f"row failed: {r['workload']} {r['backend']} n_jobs={r['n_jobs']}: {r['error']}")
    for k in ("median", "min", "max"):
        t = r["throughput"][k]
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            fail(f"throughput {k} of {r['workload']} {r['backend']} is {t}")
    th = r["throughput"]
    if not th["min"] <= th["median"] <= th["max"]:
        fail(f"min <= median <= max does not hold for {r['workload']} {r['backend']}: {th}")
    if r["reps"] != 3:
        fail(f"{r['workload']} {r['backend']} has {r['reps']} timed repetitions, not 3")
for w in want:
    families = {r["family"] for r in rows if r["workload"] == w}
    if families != {"xjob", "baseline", "joblib"}:
        fail(f"{w} has rows of {sorted(families)}, expected xjob, baseline and joblib")
    backends = {r["backend"] for r in rows if r["workload"] == w}
    for b in ("threads", "processes (fork per call)", "joblib loky", "joblib threading", "joblib multiprocessing"):
        if b not in backends:
            fail(f"{w} has no {b} row")
    if w != "npy":
        for m in ("fork", "forkserver", "spawn"):
            if f"pool ({m})" not in backends:
                fail(f"{w} has no pool ({m}) row")
tiny = [r for r in rows if r["workload"] == "tiny"]
if {str(r["batch_size"]) for r in tiny if r["family"] == "xjob"} != {"auto", "1"}:
    fail("tiny tasks were not swept over batch sizes auto and 1")
if any(r["ns_per_task"] is None for r in tiny):
    fail("a tiny-task row has no ns_per_task")
lines = list(csv.DictReader(open(f"{out}/results.csv")))
if len(lines) != len(rows):
    fail(f"results.csv has {len(lines)} rows, results.json {len(rows)}")
print(f"ok: {len(rows)} rows over {len(names)} workloads")
PY
