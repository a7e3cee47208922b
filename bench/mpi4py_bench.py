"""mpi4py.futures, the baseline of bench/mpi_bench.sh: the tiny and reduce
workloads of bench/mpi_bench.cc through MPICommExecutor (rank 0 hands out
the tasks, the other ranks run them), under mpirun:

    mpirun -np 3 python3 bench/mpi4py_bench.py --reps 5

Prints, from rank 0, lines like mpi_bench's:
    row <workload> mpi4py <median seconds> <per-task ns>
mpi4py's executor runs tasks on the ranks other than 0 (rank 0 is its
master), so with P ranks it has P - 1 workers; chunksize as joblib's
automatic batching would pick for the count (tasks / (4 * workers)).
"""
import argparse
import statistics
import time

from mpi4py import MPI
from mpi4py.futures import MPICommExecutor


def tiny(i):
    return i * 3 + 1


def leaf_sum(bounds):
    begin, end = bounds
    return sum(1.0 / (1.0 + i) for i in range(begin, end))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tiny-tasks", type=int, default=200_000)
    parser.add_argument("--tiny-unbatched-tasks", type=int, default=20_000)
    parser.add_argument("--reduce-count", type=int, default=5_000_000)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    times = {"tiny": [], "tiny1": [], "reduce": []}
    with MPICommExecutor(comm, root=0) as executor:
        if executor is None:  # a worker rank: it served the executor
            return
        workers = max(1, comm.Get_size() - 1)
        for _ in range(args.reps):
            start = time.perf_counter()
            list(executor.map(tiny, range(args.tiny_tasks),
                              chunksize=max(1, args.tiny_tasks // (4 * workers))))
            times["tiny"].append(time.perf_counter() - start)
            start = time.perf_counter()
            list(executor.map(tiny, range(args.tiny_unbatched_tasks), chunksize=1))
            times["tiny1"].append(time.perf_counter() - start)
            start = time.perf_counter()
            n = args.reduce_count
            pieces = [(k * n // (4 * workers), (k + 1) * n // (4 * workers)) for k in range(4 * workers)]
            sum(executor.map(leaf_sum, pieces))
            times["reduce"].append(time.perf_counter() - start)
        counts = {"tiny": args.tiny_tasks, "tiny1": args.tiny_unbatched_tasks, "reduce": args.reduce_count}
        for workload, samples in times.items():
            t = statistics.median(samples)
            print(f"row {workload} mpi4py {t:.6f} {t / counts[workload] * 1e9:.3f} ns/task", flush=True)


if __name__ == "__main__":
    main()
