"""joblib on dask.distributed, a baseline of bench/mpi_bench.sh: the tiny
workload of bench/mpi_bench.cc through joblib's "dask" backend on a local
cluster of P single-threaded worker processes (what a user outgrowing one
machine with joblib would reach for):

    python3 bench/dask_bench.py --workers 2 --reps 5

Prints lines like mpi_bench's: row <workload> dask <median seconds> <ns/task>
"""
import argparse
import statistics
import time


def tiny(i):
    return i * 3 + 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tiny-tasks", type=int, default=20_000)
    parser.add_argument("--tiny-unbatched-tasks", type=int, default=2_000)
    args = parser.parse_args()
    import joblib
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        times = {"tiny": [], "tiny1": []}
        with joblib.parallel_backend("dask"):
            for _ in range(args.reps):
                start = time.perf_counter()
                joblib.Parallel(batch_size="auto")(joblib.delayed(tiny)(i) for i in range(args.tiny_tasks))
                times["tiny"].append(time.perf_counter() - start)
                start = time.perf_counter()
                joblib.Parallel(batch_size=1)(joblib.delayed(tiny)(i) for i in range(args.tiny_unbatched_tasks))
                times["tiny1"].append(time.perf_counter() - start)
    counts = {"tiny": args.tiny_tasks, "tiny1": args.tiny_unbatched_tasks}
    for workload, samples in times.items():
        t = statistics.median(samples)
        print(f"row {workload} dask {t:.6f} {t / counts[workload] * 1e9:.3f} ns/task", flush=True)


if __name__ == "__main__":
    main()
