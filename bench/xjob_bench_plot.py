#!/usr/bin/env python3
"""Plots for xjob-bench results.

Usage:
    /usr/bin/python3 bench/xjob_bench_plot.py results.json OUTDIR

Reads the JSON written by `xjob-bench` and writes three PNG files into
OUTDIR, printing their paths one per line:

  throughput_vs_njobs.png  throughput of every backend against n_jobs, one
                           panel per workload (all but `tiny`)
  dispatch_cost.png        ns per tiny task for every backend / batch size
  summary.png              small README figure: best xjob, best raw baseline
                           and best joblib row per workload, relative to the
                           best raw baseline

Exit status: 0 on success, 1 on unreadable input, 2 if matplotlib is missing.
"""

import json
import math
import os
import sys

FAMILY_ORDER = ("xjob", "baseline", "joblib")
FAMILY_STYLE = {
    # family: (linestyle, marker, bar colour)
    "xjob": ("-", "o", "#1f77b4"),
    "baseline": ("--", "s", "#7f7f7f"),
    "joblib": (":", "^", "#ff7f0e"),
}
NOT_RAW_BASELINES = ("plain loop", "sequential", "STREAM copy")


def _is_raw_baseline(row):
    """Baseline rows that are real parallel implementations (TBB, OpenMP,
    std::thread, ...), not single-thread loops or STREAM bandwidth probes."""
    backend = str(row.get("backend"))
    return (_family(row) == "baseline" and backend not in NOT_RAW_BASELINES
            and not backend.startswith("STREAM"))


def _num(v):
    """v as a finite float, else None."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _stat(row, field):
    """(median, min, max) of row[field] with finite values, or None."""
    s = row.get(field)
    if not isinstance(s, dict):
        return None
    med = _num(s.get("median"))
    if med is None:
        return None
    lo, hi = _num(s.get("min")), _num(s.get("max"))
    lo = med if lo is None else min(lo, med)
    hi = med if hi is None else max(hi, med)
    return med, lo, hi


def _good(row):
    return (isinstance(row, dict) and row.get("ok", True) is not False
            and not row.get("error"))


def _family(row):
    f = row.get("family")
    return f if f in FAMILY_STYLE else "baseline"


def _int_or_none(v):
    v = _num(v)
    return int(v) if v is not None and v == int(v) else None


def _fmt_ns(ns):
    if ns >= 1e9:
        return "%.3g s" % (ns / 1e9)
    if ns >= 1e6:
        return "%.3g ms" % (ns / 1e6)
    if ns >= 1e3:
        return "%.3g µs" % (ns / 1e3)
    return "%.3g ns" % ns


def _fmt_ratio(r):
    if r >= 100:
        return "%.0f×" % r
    if r >= 10:
        return "%.1f×" % r
    if r >= 0.1:
        return "%.2f×" % r
    return "%.2g×" % r


def machine_line(data, short=False):
    m = data.get("machine") or {}
    parts = []
    if m.get("cpu"):
        parts.append(str(m["cpu"]))
    if m.get("cpus") is not None:
        parts.append("%s CPUs" % m["cpus"])
    mem = _num(m.get("memory_gib"))
    if mem is not None:
        parts.append("%.0f GiB RAM" % mem)
    if m.get("kernel") and not short:
        parts.append(str(m["kernel"]))
    comp = " ".join(str(m[k]) for k in
                    (("compiler",) if short else ("compiler", "flags"))
                    if m.get(k))
    if comp:
        parts.append(comp)
    preset = data.get("preset")
    if preset:
        parts.append("preset: %s" % preset)
    line = "  ·  ".join(parts) or "machine: unknown"
    return line if len(line) <= 160 else line[:157] + "..."


def workload_info(data):
    """Ordered {name: info} of workloads (from `workloads`, then rows)."""
    info = {}
    for w in data.get("workloads") or []:
        if isinstance(w, dict) and w.get("name"):
            info[str(w["name"])] = w
    for r in data.get("rows") or []:
        if isinstance(r, dict) and r.get("workload") is not None:
            info.setdefault(str(r["workload"]), {"name": str(r["workload"])})
    return info


def backend_colors(rows):
    """A stable, distinct colour per (family, backend) across all panels."""
    import matplotlib
    keys = sorted({(_family(r), str(r.get("backend"))) for r in rows},
                  key=lambda k: (FAMILY_ORDER.index(k[0]), k[1]))
    palette = []
    for name in ("tab10", "Dark2", "Set1"):
        cmap = matplotlib.colormaps[name]
        palette.extend(cmap(i) for i in range(cmap.N))
    return {k: palette[i % len(palette)] for i, k in enumerate(keys)}


def _no_data(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center",
            transform=ax.transAxes, fontsize=10, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _footer(fig, data, extra=None, size=7, short=False):
    text = machine_line(data, short=short)
    if extra:
        text = extra + "\n" + text
    fig.text(0.5, 0.005, text, ha="center", va="bottom", fontsize=size,
             color="0.35")


# ---------------------------------------------------------------------------
# 1. throughput vs n_jobs
# ---------------------------------------------------------------------------

def plot_throughput(data, rows, winfo, path):
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    names = [w for w in winfo if w != "tiny"]
    series = {}  # workload -> {(family, backend): {n_jobs: (med, lo, hi)}}
    for r in rows:
        w = str(r.get("workload"))
        if w == "tiny":
            continue
        st = _stat(r, "throughput")
        nj = _int_or_none(r.get("n_jobs"))
        if st is None or nj is None:
            continue
        key = (_family(r), str(r.get("backend")))
        pts = series.setdefault(w, {}).setdefault(key, {})
        if nj not in pts or st[0] > pts[nj][0]:
            pts[nj] = st  # best median over chunk / batch sizes
    names = [w for w in names if w in series] or names[:1] or \
        ["(no workloads)"]
    colors = backend_colors([r for r in rows if r.get("workload") != "tiny"])

    n = max(1, len(names))
    ncols = min(3, n)
    nrows = int(math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(8.0, 5.2 * ncols),
                                                    3.9 * nrows + 1.4),
                             squeeze=False)
    legend = {}
    for i, ax in enumerate(axes.flat):
        if i >= len(names):
            ax.set_visible(False)
            continue
        w = names[i]
        info = winfo.get(w, {})
        title = info.get("title") or w
        if info.get("size"):
            title += "\n(%s)" % info["size"]
        ax.set_title(title, fontsize=9)
        ser = series.get(w)
        if not ser:
            _no_data(ax, "no successful rows")
            continue
        all_nj = sorted({nj for pts in ser.values() for nj in pts})
        for key in sorted(ser, key=lambda k: (FAMILY_ORDER.index(k[0]),
                                              k[1])):
            fam, backend = key
            ls, marker, _ = FAMILY_STYLE[fam]
            pts = ser[key]
            xs = sorted(pts)
            med = [pts[x][0] for x in xs]
            err = [[max(0.0, pts[x][0] - pts[x][1]) for x in xs],
                   [max(0.0, pts[x][2] - pts[x][0]) for x in xs]]
            color = colors.get(key)
            ax.errorbar(xs, med, yerr=err, linestyle=ls, marker=marker,
                        markersize=4.5, linewidth=1.6, capsize=2.5,
                        color=color, elinewidth=0.9)
            if len(xs) == 1 and len(all_nj) > 1 and fam == "baseline":
                # One-point reference (e.g. a plain loop at n_jobs=1):
                # extend it across the panel.
                ax.axhline(med[0], color=color, linestyle=ls, linewidth=0.8,
                           alpha=0.6)
            label = "%s: %s" % (fam, backend) if fam != "xjob" else \
                "xjob: %s" % backend
            legend.setdefault(key, Line2D([], [], color=color, linestyle=ls,
                                          marker=marker, markersize=4.5,
                                          label=label))
        if len(all_nj) > 1 and all_nj[0] > 0 and all_nj[-1] / all_nj[0] >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(all_nj)
        ax.set_xticklabels([str(x) for x in all_nj])
        ax.minorticks_off()
        ax.set_xlabel("n_jobs", fontsize=8)
        ax.set_ylabel("throughput [%s]" % (info.get("unit") or "?"),
                      fontsize=8)
        meds = [p[0] for pts in ser.values() for p in pts.values()
                if p[0] > 0]
        if meds and max(meds) / min(meds) > 30:
            ax.set_yscale("log")  # keep slow backends visible
            ax.set_ylabel(ax.get_ylabel() + ", log scale", fontsize=8)
        else:
            ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=7.5)
        ax.grid(True, alpha=0.3)

    fig.suptitle("Throughput vs n_jobs (higher is better)\n"
                 "median of reps, bars min–max; each point is the "
                 "backend's best chunk/batch size", fontsize=10.5)
    handles = [legend[k] for k in sorted(
        legend, key=lambda k: (FAMILY_ORDER.index(k[0]), k[1]))]
    ncol = max(1, min(4, len(handles)))
    legend_rows = int(math.ceil(len(handles) / ncol)) if handles else 0
    legend_h = 0.2 * legend_rows + 0.35  # inches
    fig_h = fig.get_figheight()
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=ncol,
                   fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 0.35 / fig_h),
                   title="solid: xjob   dashed: baselines   dotted: joblib",
                   title_fontsize=8)
    _footer(fig, data)
    fig.tight_layout(rect=(0, (legend_h + 0.35) / fig_h, 1,
                           1 - 0.6 / fig_h))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------
# 2. dispatch cost of tiny tasks
# ---------------------------------------------------------------------------

def plot_dispatch(data, rows, path):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    tiny = []
    for r in rows:
        if str(r.get("workload")) != "tiny":
            continue
        st = _stat(r, "ns_per_task")
        nj = _int_or_none(r.get("n_jobs"))
        if st is None or nj is None or st[0] <= 0:
            continue
        tiny.append((r, st, nj))

    n_bars = len({(_family(r), str(r.get("backend")), r.get("batch_size"))
                  for r, _, _ in tiny})
    fig_h = 1.7 + 0.3 * max(3, n_bars)
    fig, ax = plt.subplots(figsize=(9, min(fig_h, 16)))
    if not tiny:
        _no_data(ax, "no successful `tiny` rows")
        ax.set_title("Dispatch cost per tiny task (lower is better)")
        _footer(fig, data)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return

    max_nj = max(nj for _, _, nj in tiny)
    # Per (family, backend, batch): rows at that series' largest n_jobs
    # (the global maximum when present), best median over chunk sizes.
    best = {}
    for r, st, nj in tiny:
        key = (_family(r), str(r.get("backend")), r.get("batch_size"))
        cur = best.get(key)
        if cur is None or nj > cur[2] or (nj == cur[2] and st[0] < cur[1][0]):
            best[key] = (r, st, nj)
    items = sorted(best.items(),
                   key=lambda kv: (FAMILY_ORDER.index(kv[0][0]),
                                   kv[1][1][0]))
    labels, meds, los, his, cols = [], [], [], [], []
    for (fam, backend, batch), (r, st, nj) in items:
        label = backend
        if batch is not None:
            label += "  (batch %s)" % batch
        if r.get("chunk_size") is not None:
            label += "  chunk %s" % r["chunk_size"]
        if nj != max_nj:
            label += "  [n_jobs=%d]" % nj
        labels.append(label)
        meds.append(st[0])
        los.append(st[1])
        his.append(st[2])
        cols.append(FAMILY_STYLE[fam][2])

    y = list(range(len(items)))[::-1]  # first item on top
    left = min(los) / 3.0
    ax.barh(y, [m - left for m in meds], left=left, color=cols, height=0.65,
            xerr=[[m - lo for m, lo in zip(meds, los)],
                  [hi - m for m, hi in zip(meds, his)]],
            error_kw=dict(ecolor="0.2", capsize=2.5, elinewidth=0.9))
    ax.set_xscale("log")
    right = max(his) * 12
    ax.set_xlim(left, right)
    for yi, m, hi in zip(y, meds, his):
        ax.text(hi * 1.15, yi, _fmt_ns(m), va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("ns per task (log scale; median, whiskers min–max)",
                  fontsize=9)
    ax.grid(True, axis="x", which="major", alpha=0.3)
    fams = [f for f in FAMILY_ORDER if any(k[0] == f for k, _ in items)]
    fig_h = fig.get_figheight()
    fig.legend(handles=[Patch(color=FAMILY_STYLE[f][2], label=f)
                        for f in fams],
               loc="lower center", bbox_to_anchor=(0.5, 0.3 / fig_h),
               ncol=len(fams), fontsize=8, frameon=False)
    ax.set_title("Dispatch cost per tiny task (lower is better)\n"
                 "n_jobs = %d; task = i ^ 0x5a, so the bar is almost pure "
                 "scheduling overhead" % max_nj, fontsize=10)
    fig_h = fig.get_figheight()
    fig.tight_layout(rect=(0, 0.65 / fig_h, 1, 1))
    _footer(fig, data)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------
# 3. summary (README figure)
# ---------------------------------------------------------------------------

def plot_summary(data, rows, winfo, path):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    def best(w, pred):
        cands = []
        for r in rows:
            if str(r.get("workload")) != w or not pred(r):
                continue
            st = _stat(r, "throughput")
            if st is not None and st[0] > 0:
                cands.append((st[0], r))
        return max(cands, key=lambda c: c[0]) if cands else None

    groups, skipped = [], []
    for w in winfo:
        base = best(w, _is_raw_baseline)
        if base is None:
            if any(str(r.get("workload")) == w for r in rows):
                skipped.append(w)
            continue
        xj = best(w, lambda r: _family(r) == "xjob")
        jl = best(w, lambda r: _family(r) == "joblib")
        groups.append((w, base, xj, jl))

    fig, ax = plt.subplots(figsize=(7, 3.5))
    title = "xjob vs raw baselines and joblib (higher is better)"
    if not groups:
        _no_data(ax, "no workload has a raw baseline row")
        ax.set_title(title, fontsize=10)
        _footer(fig, data, size=5.5, short=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return

    width = 0.26
    slots = (("xjob (best)", 2, -width), ("best raw baseline", 1, 0.0),
             ("joblib (best)", 3, width))
    colors = {"xjob (best)": FAMILY_STYLE["xjob"][2],
              "best raw baseline": FAMILY_STYLE["baseline"][2],
              "joblib (best)": FAMILY_STYLE["joblib"][2]}
    ratios = []
    for gi, g in enumerate(groups):
        base_tp = g[1][0]
        for label, idx, dx in slots:
            entry = g[idx]
            if entry is None:
                continue
            ratio = entry[0] / base_tp
            ratios.append(ratio)
            ax.bar(gi + dx, ratio, width=width * 0.95, bottom=None,
                   color=colors[label])
            ax.text(gi + dx, ratio * 1.08, _fmt_ratio(ratio), ha="center",
                    va="bottom", fontsize=5.5,
                    rotation=90 if len(groups) > 4 else 0)
    ax.set_yscale("log")
    lo, hi = min(ratios + [1.0]), max(ratios + [1.0])
    ax.set_ylim(lo / 2.0, hi * (4.0 if len(groups) > 4 else 2.5))
    ax.axhline(1.0, color="0.2", linewidth=0.9, linestyle="-", zorder=0)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g[0] for g in groups], fontsize=7.5)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel("throughput / best raw baseline", fontsize=7.5)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, axis="y", which="major", alpha=0.3)
    ax.legend(handles=[Patch(color=colors[s[0]], label=s[0]) for s in slots],
              fontsize=6.5, loc="upper left", bbox_to_anchor=(1.005, 1.0),
              frameon=False)
    ax.set_title(title, fontsize=9.5)
    extra = "raw baseline = best of TBB / OpenMP / std::thread etc. " \
            "(1.0 line); bars: best median over backends, n_jobs, chunks"
    if skipped:
        extra += "; no raw baseline: " + ", ".join(skipped)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    _footer(fig, data, extra=extra, size=5.5, short=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: %s results.json OUTDIR\n" % argv[0])
        return 1
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except Exception as e:
        sys.stderr.write("xjob_bench_plot: matplotlib is required (%s: %s); "
                         "install it, e.g. apt-get install "
                         "python3-matplotlib\n" % (type(e).__name__, e))
        return 2
    try:
        with open(argv[1]) as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError("top level is not a JSON object")
    except Exception as e:
        sys.stderr.write("xjob_bench_plot: cannot read %s: %s\n"
                         % (argv[1], e))
        return 1
    outdir = argv[2]
    os.makedirs(outdir, exist_ok=True)

    rows = [r for r in (data.get("rows") or []) if _good(r)]
    winfo = workload_info(data)
    outputs = [os.path.join(outdir, n) for n in (
        "throughput_vs_njobs.png", "dispatch_cost.png", "summary.png")]
    plot_throughput(data, rows, winfo, outputs[0])
    plot_dispatch(data, rows, outputs[1])
    plot_summary(data, rows, winfo, outputs[2])
    for p in outputs:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
