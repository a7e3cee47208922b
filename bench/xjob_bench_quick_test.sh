#!/usr/bin/env bash
# Runs `xjob-bench --quick` and checks what it wrote (no timing thresholds):
# the exit status, results.csv with a line per row, results.json with the
# machine's description and, for every workload, correct xjob, baseline and
# joblib rows whose numbers are finite and positive, and three PNG plots;
# then that text which is not ASCII survives the trip through joblib.
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
want = ["map", "cold", "rowreduce", "sum", "sumsq", "md5", "tiny", "calls", "sleep", "npy", "resume"]
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
    # resume prices journaling against plain .npy outputs, cold first
    # touch against fresh malloc memory: no joblib rows.
    expected_families = {"xjob", "baseline"} if w in ("resume", "cold") else {"xjob", "baseline", "joblib"}
    if families != expected_families:
        fail(f"{w} has rows of {sorted(families)}, expected {sorted(expected_families)}")
    backends = {r["backend"] for r in rows if r["workload"] == w}
    for b in ("threads", "processes", "joblib loky", "joblib threading", "joblib multiprocessing"):
        if b.startswith("joblib") and w in ("resume", "cold"):
            continue
        if b not in backends and not (w == "calls" and b == "joblib multiprocessing"):
            fail(f"{w} has no {b} row")
    if w == "resume":
        for b in ("xjob into create_npy", "xjob into create_npy, msync"):
            if b not in backends:
                fail(f"resume has no {b} row")
    if w == "cold":
        for b in ("raw TBB, fresh malloc", "OpenMP, fresh malloc", "raw TBB, cold shared_array"):
            if b not in backends:
                fail(f"cold has no {b} row")
    if w not in ("npy", "resume", "calls", "sum", "cold"):
        for m in ("fork", "forkserver", "spawn"):
            if f"pool ({m})" not in backends:
                fail(f"{w} has no pool ({m}) row")
sums = {r["backend"] for r in rows if r["workload"] == "sum"}
for b in ("raw TBB", "raw TBB deterministic", "OpenMP reduction"):
    if b not in sums:
        fail(f"sum has no {b} row")
tiny = [r for r in rows if r["workload"] == "tiny"]
if {str(r["batch_size"]) for r in tiny if r["family"] == "xjob"} != {"auto", "1"}:
    fail("tiny tasks were not swept over batch sizes auto and 1")
if any(r["ns_per_task"] is None for r in tiny):
    fail("a tiny-task row has no ns_per_task")
calls = [r for r in rows if r["workload"] == "calls"]
if any(r["ns_per_task"] is None for r in calls):
    fail("a calls row has no time per call")
if any(r["backend"] == "joblib multiprocessing" for r in calls):
    fail("calls has a joblib multiprocessing row (its Pool per call can deadlock in the co-process)")
lines = list(csv.DictReader(open(f"{out}/results.csv")))
if len(lines) != len(rows):
    fail(f"results.csv has {len(lines)} rows, results.json {len(rows)}")
print(f"ok: {len(rows)} rows over {len(names)} workloads")
PY

# Non-ASCII round trip: a joblib backend named "thréading😀" goes to
# joblib_bench.py in a request, comes back in its error message (which
# Python sends \u-escaped, the emoji as a surrogate pair), and must reach
# results.json and results.csv unchanged. The row fails: exit status 1.
odd="$(printf 'thr\303\251ading\360\237\230\200')"
set +e
"$bench" --workloads sleep --sleep-tasks 2 --sleep-ms 1 --backends threads --no-pools --no-baselines \
  --n-jobs 2 --reps 1 --warmup 0 --joblib-backends "$odd" --no-plots --out-dir "$out-utf8" --python "$python" \
  >"$out-utf8.log" 2>&1
status=$?
set -e
[[ $status -eq 1 ]] || { cat "$out-utf8.log"; echo "the run with an unknown joblib backend exited with $status, not 1" >&2; exit 1; }
"$python" - "$out-utf8" <<'PY'
import csv, json, sys
out = sys.argv[1]
odd = "thr\u00e9ading\U0001F600"
data = json.load(open(f"{out}/results.json", encoding="ascii"))  # non-ASCII is escaped
if data["settings"]["joblib_backends"] != odd:
    sys.exit(f"results.json: settings.joblib_backends is {data['settings']['joblib_backends']!r}, not {odd!r}")
rows = [r for r in data["rows"] if r["family"] == "joblib"]
if [r["backend"] for r in rows] != ["joblib " + odd] or rows[0]["ok"] or f"'{odd}'" not in rows[0]["error"]:
    sys.exit(f"results.json: the joblib row does not carry {odd!r} through: {rows}")
lines = [l for l in csv.DictReader(open(f"{out}/results.csv", encoding="utf-8")) if l["family"] == "joblib"]
if len(lines) != 1 or lines[0]["backend"] != "joblib " + odd or f"'{odd}'" not in lines[0]["error"]:
    sys.exit(f"results.csv: the joblib row does not carry {odd!r} through: {lines}")
print(f"ok: {ascii(odd)} went to joblib and back")
PY
