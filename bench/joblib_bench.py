#!/usr/bin/env python3
"""joblib co-process for xjob-bench.

Started by the C++ tool (bench/xjob_bench/joblib_client.cc) as

    /usr/bin/python3 bench/joblib_bench.py

with stdin/stdout pipes.  It runs the benchmark workloads through joblib on
request, so that xjob can be compared with what a Python user gets from
joblib on the same machine.

Protocol: JSON lines, one object per line in each direction.
  * At start-up:  {"ready": true, "python": "3.11.2", "joblib": "1.2.0",
                   "numpy": "1.24.2"}
    or, when joblib/numpy cannot be imported, {"ready": false, "error": "..."}
    and exit status 0.
  * Request:  {"id": 7, "workload": "map", "backend": "loky", "n_jobs": 2,
               "batch_size": "auto" | <int>, "chunk": 32768,
               "size": {...}, "dir": "/dev/shm" [, "npy_dir": "/tmp"]}
    Reply:    {"id": 7, "seconds": 0.123, "result": "<string>",
               "tasks": <joblib tasks dispatched>, "batches": <joblib batches>,
               "joblib_backend": "LokyBackend", "error": null}
    On failure: "error": "<Type>: <message>", "seconds": null, "result": null,
    "tasks": null; the co-process keeps serving.
  * {"id": k, "command": "quit"} -> {"id": k, "bye": true}, clean up, exit 0.
    {"id": k, "command": "ping"} -> {"id": k, "pong": true}.
  * EOF on stdin (the parent is gone or done): clean up, exit 0.

Nothing but protocol lines is ever written to the protocol pipe: at start-up
the real stdout is moved to a private descriptor and file descriptor 1 is
pointed at stderr, so prints/warnings from joblib, loky or worker processes
(which inherit fd 1) end up on stderr.

Only `seconds` is timed (time.perf_counter): the Parallel(...)(...) call plus
assembling its results (and, for `npy`, creating and closing the output
.npy file).  Inputs, memory-mapped files and reference results are built
outside the timed region and cached between requests.

The task functions live at module level in this file.  The script imports
itself as the module `joblib_bench` (its directory is put on sys.path and on
PYTHONPATH, so loky workers can import it too) and dispatches
`joblib_bench.<func>`, so loky/multiprocessing pickle the functions by
reference instead of cloudpickling `__main__` functions by value.
"""

import collections
import hashlib
import json
import os
import platform
import signal
import sys
import time
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))

try:  # Task functions need numpy; the import error is reported by main().
    import numpy as np
except Exception:  # pragma: no cover - reported in the ready line
    np = None


# ---------------------------------------------------------------------------
# Task functions (module level: picklable by reference for loky and
# multiprocessing).  They must match the C++ workload definitions.
# ---------------------------------------------------------------------------

def map_slice(x, y, a, b):
    """y[a:b] = sqrt(x[a:b]) * 2 + 1, in place (no full-slice temporaries)."""
    ys = y[a:b]
    np.sqrt(x[a:b], out=ys)
    ys *= 2.0
    ys += 1.0
    return None


def row_sums(x, a, b):
    """Row sums of rows [a, b) of a 2-D array."""
    return np.asarray(x[a:b].sum(axis=1))


def slice_sum(x, a, b):
    """NumPy's sum of x[a:b]."""
    return float(np.sum(x[a:b]))


def sum_squares(a, b):
    """Sum of i*i for i in [a, b), in pure Python."""
    return sum(i * i for i in range(a, b))


def md5_chain(j, rounds):
    """md5 of b"Hello World <j>", then rounds-1 more md5 of the digest."""
    d = hashlib.md5(b"Hello World " + str(j).encode()).digest()
    for _ in range(rounds - 1):
        d = hashlib.md5(d).digest()
    return d.hex()


def tiny(i):
    return i ^ 0x5a


def sleep_task(i, ms):
    time.sleep(ms / 1000.0)
    return i


def warm_task(i, seconds):
    """Used (untimed) to make sure every worker of a pool has started."""
    time.sleep(seconds)
    return i


# ---------------------------------------------------------------------------
# Everything below only runs in the co-process itself (not in workers).
# ---------------------------------------------------------------------------

_OWNER_PID = None          # pid of the co-process (forked children differ)
_PROTO = None              # file object of the protocol pipe (real stdout)
_TEMP_FILES = set()        # files to remove at exit
_STATE = None              # the State object, for cleanup
_CLEANING = False
_VERBOSE = bool(os.environ.get("XJOB_JOBLIB_VERBOSE"))
_FILE_PREFIX = "xjob-joblib-"
_BLOCK = 1 << 22           # elements per block when building / checking


def log(msg):
    if _VERBOSE:
        sys.stderr.write("joblib_bench[%d]: %s\n" % (os.getpid(), msg))
        sys.stderr.flush()


def send(obj):
    _PROTO.write(json.dumps(obj, separators=(", ", ": ")) + "\n")
    _PROTO.flush()


def _blocks(n, step=_BLOCK):
    for a in range(0, n, step):
        yield a, min(a + step, n)


def _set_pdeathsig():
    """Die (SIGTERM) when the parent dies (Linux prctl PR_SET_PDEATHSIG)."""
    ppid = os.getppid()
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except Exception as e:  # not Linux, no libc: EOF on stdin still works
        log("prctl failed: %r" % (e,))
    if os.getppid() != ppid:  # parent died before prctl took effect
        raise SystemExit(0)


def _remove_temp_files():
    for path in list(_TEMP_FILES):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log("cannot remove %s: %r" % (path, e))
        _TEMP_FILES.discard(path)


def _cleanup():
    """Close the pools and remove temp files (only in the owner process)."""
    global _CLEANING
    if os.getpid() != _OWNER_PID or _CLEANING:
        return
    _CLEANING = True
    _remove_temp_files()  # first: cheap, and the most important part
    if _STATE is not None:
        try:
            _STATE.close()
        except BaseException as e:
            log("closing state failed: %r" % (e,))
    _remove_temp_files()
    if _PROTO is not None:
        try:
            _PROTO.close()
        except Exception:
            pass


def _on_signal(signum, frame):
    if os.getpid() != _OWNER_PID:
        # A forked multiprocessing worker inherited this handler: behave as
        # if it did not exist.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _CLEANING:
        return
    _remove_temp_files()
    raise SystemExit(0)


def _remove_stale_files(directory):
    """Remove files left in `directory` by co-processes that were killed."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not name.startswith(_FILE_PREFIX):
            continue
        pid_str = name[len(_FILE_PREFIX):].split("-", 1)[0]
        if not pid_str.isdigit() or int(pid_str) == os.getpid():
            continue
        try:
            os.kill(int(pid_str), 0)
            continue  # still alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.unlink(os.path.join(directory, name))
            log("removed stale %s" % name)
        except OSError:
            pass


class BenchError(Exception):
    """A failed request (bad parameters or a failed result check)."""


class Cache:
    """LRU cache of inputs / outputs / references with a byte budget.

    Entries are (value, nbytes, paths).  Evicting an entry unlinks its files.
    """

    def __init__(self, budget_bytes):
        self.budget = budget_bytes
        self.entries = collections.OrderedDict()
        self.seen_dirs = set()

    def total(self):
        return sum(e[1] for e in self.entries.values())

    def get(self, key, nbytes, builder, keep=()):
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key][0]
        # Make room before building (never evict what this request uses).
        for k in list(self.entries):
            if self.total() + nbytes <= self.budget:
                break
            if k in keep:
                continue
            self.evict(k)
        value, paths = builder()
        self.entries[key] = (value, nbytes, paths)
        return value

    def evict(self, key):
        value, nbytes, paths = self.entries.pop(key)
        log("evict %r (%d bytes)" % (key, nbytes))
        del value
        for p in paths:
            try:
                os.unlink(p)
            except OSError:
                pass
            _TEMP_FILES.discard(p)

    def clear(self):
        for k in list(self.entries):
            self.evict(k)

    def data_path(self, directory, tag):
        if directory not in self.seen_dirs:
            self.seen_dirs.add(directory)
            _remove_stale_files(directory)
        return os.path.join(directory, "%s%d-%s.f64" % (_FILE_PREFIX,
                                                         os.getpid(), tag))


def _new_memmap(path, shape):
    _TEMP_FILES.add(path)
    return np.memmap(path, dtype=np.float64, mode="w+", shape=shape)


class State:
    """Warm joblib Parallel objects and cached data, shared by requests."""

    BACKENDS = ("loky", "threading", "multiprocessing")

    def __init__(self, joblib_mod, T):
        self.joblib = joblib_mod
        self.T = T  # this file imported as module `joblib_bench`
        budget_gib = float(os.environ.get("XJOB_JOBLIB_CACHE_GIB", "8"))
        self.cache = Cache(int(budget_gib * (1 << 30)))
        self.parallels = {}      # (backend, n_jobs, batch_size) -> Parallel
        self.batch_state = {}    # (pkey, workload key) -> auto-batch stats
        self.loky_n_jobs = None  # size the global loky executor is set up for
        self.last_use = {}       # pkey -> perf_counter of last call

    # -- pools -------------------------------------------------------------

    def _effective_n_jobs(self, backend, n_jobs):
        from joblib.parallel import BACKENDS
        return BACKENDS[backend]().effective_n_jobs(n_jobs)

    def _close_parallel(self, key):
        p = self.parallels.pop(key, None)
        if p is None:
            return
        try:
            p.__exit__(None, None, None)
        except Exception as e:
            log("closing %r failed: %r" % (key, e))
        for k in [k for k in self.batch_state if k[0] == key]:
            del self.batch_state[k]

    def _warm_up(self, key, parallel, eff):
        """Untimed: make sure all workers of the pool are up."""
        Parallel, delayed = self.joblib.Parallel, self.joblib.delayed
        backend, n_jobs, _ = key
        if eff <= 1:
            return
        if backend == "loky":
            # The loky executor is global: a throw-away Parallel with
            # batch_size=1 reaches every worker without touching the
            # auto-batching statistics of `parallel`.
            Parallel(n_jobs=n_jobs, backend="loky", batch_size=1)(
                delayed(self.T.warm_task)(i, 0.05) for i in range(2 * eff))
        else:
            parallel(delayed(self.T.warm_task)(i, 0.01)
                     for i in range(2 * eff))
            if hasattr(parallel._backend, "reset_batch_stats"):
                parallel._backend.reset_batch_stats()

    def get_parallel(self, backend, n_jobs, batch_size):
        if backend not in self.BACKENDS:
            raise BenchError("unknown backend %r (expected one of %s)"
                             % (backend, ", ".join(self.BACKENDS)))
        key = (backend, n_jobs, batch_size)
        eff = self._effective_n_jobs(backend, n_jobs)
        if backend == "loky" and eff > 1 and self.loky_n_jobs not in (None,
                                                                     eff):
            # All loky Parallel objects share joblib's global reusable
            # executor; configuring one with another n_jobs resizes (or
            # replaces) it under the others.  Only one loky worker count can
            # be live at a time.
            for k in [k for k in self.parallels if k[0] == "loky"]:
                if self._effective_n_jobs("loky", k[1]) > 1:
                    self._close_parallel(k)
        p = self.parallels.get(key)
        if p is None:
            p = self.joblib.Parallel(n_jobs=n_jobs, backend=backend,
                                     batch_size=batch_size)
            p.__enter__()
            self.parallels[key] = p
            if backend == "loky" and eff > 1:
                self.loky_n_jobs = eff
            self._warm_up(key, p, eff)
            self.last_use[key] = time.perf_counter()
        elif (backend == "loky" and eff > 1 and
              time.perf_counter() - self.last_use.get(key, 0) > 200):
            # loky workers exit after 300 s idle (joblib default): respawn
            # them outside the timed region.
            self._warm_up(key, p, eff)
        return p

    def drop_backend(self, backend):
        """After a failed call: forget every Parallel of that backend."""
        for k in [k for k in self.parallels if k[0] == backend]:
            self._close_parallel(k)
        if backend == "loky":
            self.loky_n_jobs = None

    def run_parallel(self, key, parallel, wkey, tasks):
        """Run Parallel with per-workload auto-batching statistics."""
        be = parallel._backend
        auto = hasattr(be, "_effective_batch_size")
        if auto:
            saved = self.batch_state.get((key, wkey))
            if saved is None:
                be.reset_batch_stats()
            else:
                be._effective_batch_size, be._smoothed_batch_duration = saved
        try:
            out = parallel(tasks)
        except BaseException:
            self.drop_backend(key[0])
            raise
        if auto:
            self.batch_state[(key, wkey)] = (be._effective_batch_size,
                                             be._smoothed_batch_duration)
        self.last_use[key] = time.perf_counter()
        return out

    def close(self):
        for k in list(self.parallels):
            self._close_parallel(k)
        try:
            from joblib.externals.loky import reusable_executor as rex
            ex = rex._executor
            if ex is not None:
                ex.shutdown(wait=True, kill_workers=True)
        except Exception as e:
            log("loky shutdown failed: %r" % (e,))
        self.cache.clear()

    # -- data --------------------------------------------------------------

    def map_input(self, directory, n):
        key = ("x", directory, n)

        def build():
            path = self.cache.data_path(directory, "x-%d" % n)
            x = _new_memmap(path, (n,))
            for a, b in _blocks(n):
                x[a:b] = 0.25 + (np.arange(a, b) % 4099) * 0.37
            x.flush()
            del x
            # Read-only for the workers.
            return np.memmap(path, dtype=np.float64, mode="r",
                             shape=(n,)), [path]
        return self.cache.get(key, 8 * n, build, keep=self._keep)

    def map_ref(self, directory, n):
        x = self.map_input(directory, n)

        def build():
            ref = np.empty(n, dtype=np.float64)
            for a, b in _blocks(n):
                r = ref[a:b]
                np.sqrt(x[a:b], out=r)
                r *= 2.0
                r += 1.0
            return ref, []
        return self.cache.get(("map_ref", n), 8 * n, build, keep=self._keep)

    def map_output(self, directory, n):
        def build():
            path = self.cache.data_path(directory, "y-%d" % n)
            return _new_memmap(path, (n,)), [path]
        return self.cache.get(("y", directory, n), 8 * n, build,
                              keep=self._keep)

    def row_input(self, directory, r, c):
        def build():
            path = self.cache.data_path(directory, "rows-%dx%d" % (r, c))
            x = _new_memmap(path, (r, c))
            flat = x.reshape(-1)
            for a, b in _blocks(r * c):
                flat[a:b] = 0.25 + (np.arange(a, b) % 4099) * 0.37
            x.flush()
            del x, flat
            return np.memmap(path, dtype=np.float64, mode="r",
                             shape=(r, c)), [path]
        return self.cache.get(("xr", directory, r, c), 8 * r * c, build,
                              keep=self._keep)

    def row_ref(self, directory, r, c):
        x = self.row_input(directory, r, c)

        def build():
            return np.asarray(x.sum(axis=1)), []
        return self.cache.get(("row_ref", directory, r, c), 8 * r, build,
                              keep=self._keep)

    _keep = ()

    # -- requests ----------------------------------------------------------

    def handle(self, req):
        delayed = self.joblib.delayed
        T = self.T
        workload = req.get("workload")
        backend = req.get("backend")
        n_jobs = req.get("n_jobs")
        batch_size = req.get("batch_size", "auto")
        chunk = req.get("chunk")
        size = req.get("size") or {}
        directory = req.get("dir") or "/dev/shm"

        if not isinstance(n_jobs, int) or isinstance(n_jobs, bool):
            raise BenchError("n_jobs must be an integer, got %r" % (n_jobs,))
        if isinstance(batch_size, float) and batch_size.is_integer():
            batch_size = int(batch_size)
        if batch_size != "auto" and not (isinstance(batch_size, int) and
                                         batch_size > 0):
            raise BenchError("batch_size must be 'auto' or a positive "
                             "integer, got %r" % (batch_size,))

        def need_chunk():
            if not isinstance(chunk, int) or chunk <= 0:
                raise BenchError("chunk must be a positive integer, got %r"
                                 % (chunk,))
            return chunk

        def need(name):
            v = size.get(name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise BenchError("size.%s must be a positive integer, got %r"
                                 % (name, v))
            return v

        wkey = (workload, json.dumps(size, sort_keys=True), chunk)
        pkey = (backend, n_jobs, batch_size)
        perf = time.perf_counter

        # Validate the workload before touching any pool.
        known = ("map", "rowreduce", "sum", "sumsq", "md5", "tiny", "calls",
                 "sleep", "npy")
        if workload not in known:
            raise BenchError("unknown workload %r (expected one of %s)"
                             % (workload, ", ".join(known)))

        if workload in ("map", "npy"):
            n = need("elements")
            ck = need_chunk()
            self._keep = (("x", directory, n), ("map_ref", n),
                          ("y", directory, n))
            x = self.map_input(directory, n)
            ref = self.map_ref(directory, n)
            parallel = self.get_parallel(backend, n_jobs, batch_size)
            if workload == "map":
                y = self.map_output(directory, n)
                y.fill(np.nan)  # poison: stale output cannot pass the check
                t0 = perf()
                self.run_parallel(pkey, parallel, wkey, (
                    delayed(T.map_slice)(x, y, a, min(a + ck, n))
                    for a in range(0, n, ck)))
                seconds = perf() - t0
                check_close(y, ref, 4e-16)
                result = "%.17g" % float(np.sum(y))
            else:
                npy_dir = req.get("npy_dir") or "/tmp"
                path = os.path.join(npy_dir,
                                    "joblib_out_%d.npy" % os.getpid())
                _TEMP_FILES.add(path)
                try:
                    open_memmap = np.lib.format.open_memmap
                    t0 = perf()
                    y = open_memmap(path, mode="w+", dtype=np.float64,
                                    shape=(n,))
                    self.run_parallel(pkey, parallel, wkey, (
                        delayed(T.map_slice)(x, y, a, min(a + ck, n))
                        for a in range(0, n, ck)))
                    # No y.flush(): msync would write the file to disk,
                    # which xjob's commit does not do either; unmapping
                    # leaves the data in the page cache, visible to all.
                    del y
                    seconds = perf() - t0
                    yr = np.load(path, mmap_mode="r")
                    if yr.shape != (n,) or yr.dtype != np.float64:
                        raise BenchError("npy output has shape %r dtype %s"
                                         % (yr.shape, yr.dtype))
                    check_close(yr, ref, 4e-16)
                    result = "%.17g" % float(np.sum(yr))
                    del yr
                finally:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
                    _TEMP_FILES.discard(path)

        elif workload == "rowreduce":
            r, c = need("rows"), need("cols")
            ck = need_chunk()
            self._keep = (("xr", directory, r, c), ("row_ref", directory,
                                                     r, c))
            x = self.row_input(directory, r, c)
            ref = self.row_ref(directory, r, c)
            parallel = self.get_parallel(backend, n_jobs, batch_size)
            t0 = perf()
            parts = self.run_parallel(pkey, parallel, wkey, (
                delayed(T.row_sums)(x, a, min(a + ck, r))
                for a in range(0, r, ck)))
            sums = np.concatenate(parts)
            seconds = perf() - t0
            if sums.shape != (r,):
                raise BenchError("row sums have shape %r, expected (%d,)"
                                 % (sums.shape, r))
            if not np.allclose(sums, ref, rtol=1e-12, atol=0):
                bad = int(np.argmax(~np.isclose(sums, ref, rtol=1e-12,
                                                atol=0)))
                raise BenchError("row sum %d is %r, expected %r"
                                 % (bad, float(sums[bad]), float(ref[bad])))
            result = "%.17g" % float(np.sum(sums))

        elif workload == "sum":
            n = need("elements")
            ck = need_chunk()
            self._keep = (("x", directory, n),)
            x = self.map_input(directory, n)
            parallel = self.get_parallel(backend, n_jobs, batch_size)
            t0 = perf()
            parts = self.run_parallel(pkey, parallel, wkey, (
                delayed(T.slice_sum)(x, a, min(a + ck, n))
                for a in range(0, n, ck)))
            total = sum(parts)
            seconds = perf() - t0
            if len(parts) != (n + ck - 1) // ck:
                raise BenchError("sum: %d partial sums, expected %d"
                                 % (len(parts), (n + ck - 1) // ck))
            result = "%.17g" % total

        elif workload == "sumsq":
            n = need("count")
            ck = need_chunk()
            parallel = self.get_parallel(backend, n_jobs, batch_size)
            t0 = perf()
            parts = self.run_parallel(pkey, parallel, wkey, (
                delayed(T.sum_squares)(a, min(a + ck, n))
                for a in range(0, n, ck)))
            total = sum(parts)
            seconds = perf() - t0
            expected = n * (n - 1) * (2 * n - 1) // 6
            if total != expected:
                raise BenchError("sum of squares is %d, expected %d"
                                 % (total, expected))
            result = str(total)

        elif workload == "md5":
            chains, rounds = need("chains"), need("rounds")
            parallel = self.get_parallel(backend, n_jobs, batch_size)
            t0 = perf()
            digests = self.run_parallel(pkey, parallel, wkey, (
                delayed(T.md5_chain)(j, rounds) for j in range(chains)))
            result = ",".join(digests)
            seconds = perf() - t0
            if len(digests) != chains or any(len(d) != 32 for d in digests):
                raise BenchError("md5: got %d digests, expected %d"
                                 % (len(digests), chains))
            # Spot-check the first and last chains in-process.
            for j in sorted({0, chains - 1}):
                if digests[j] != md5_chain(j, rounds):
                    raise BenchError("md5 chain %d mismatch" % j)

        elif workload == "tiny":
            n = need("tasks")
            parallel = self.get_parallel(backend, n_jobs, batch_size)
            t0 = perf()
            out = self.run_parallel(pkey, parallel, wkey, (
                delayed(T.tiny)(i) for i in range(n)))
            total = sum(out)
            seconds = perf() - t0
            expected = sum(i ^ 0x5a for i in range(n))
            if total != expected or len(out) != n:
                raise BenchError("tiny: sum %d, expected %d" % (total,
                                                                expected))
            result = str(total)

        elif workload == "calls":
            # The one-liner in a loop: a new Parallel per call, as users
            # write it. get_parallel sizes and warms loky's reusable
            # executor outside the clock, so the calls find it warm.
            calls, n = need("calls"), need("tasks")
            if backend == "multiprocessing":
                raise BenchError("calls: no multiprocessing row (a Pool "
                                 "forked per call can deadlock here)")
            parallel = self.get_parallel(backend, n_jobs, batch_size)
            total = 0
            t0 = perf()
            for _ in range(calls):
                one = self.joblib.Parallel(n_jobs=n_jobs, backend=backend,
                                           batch_size=batch_size)
                total += sum(one(delayed(T.tiny)(i) for i in range(n)))
            seconds = perf() - t0
            expected = calls * sum(i ^ 0x5a for i in range(n))
            if total != expected:
                raise BenchError("calls: sum %d, expected %d" % (total,
                                                                 expected))
            self._keep = ()
            return {"seconds": seconds, "result": str(total),
                    "tasks": calls, "batches": calls,
                    "joblib_backend": type(one._backend).__name__}

        elif workload == "sleep":
            n = need("tasks")
            ms = size.get("ms")
            if not isinstance(ms, (int, float)) or ms < 0:
                raise BenchError("size.ms must be a number >= 0, got %r"
                                 % (ms,))
            parallel = self.get_parallel(backend, n_jobs, batch_size)
            t0 = perf()
            out = self.run_parallel(pkey, parallel, wkey, (
                delayed(T.sleep_task)(i, ms) for i in range(n)))
            total = sum(out)
            seconds = perf() - t0
            if total != n * (n - 1) // 2:
                raise BenchError("sleep: sum %d, expected %d"
                                 % (total, n * (n - 1) // 2))
            result = str(total)

        self._keep = ()
        return {"seconds": seconds, "result": result,
                "tasks": int(parallel.n_dispatched_tasks),
                "batches": int(parallel.n_dispatched_batches),
                "joblib_backend": type(parallel._backend).__name__}


def check_close(y, ref, rtol):
    """np.allclose(y, ref, rtol, atol=0), block by block (no big temps)."""
    n = ref.shape[0]
    if y.shape != ref.shape:
        raise BenchError("output has shape %r, expected %r"
                         % (y.shape, ref.shape))
    for a, b in _blocks(n):
        if not np.allclose(y[a:b], ref[a:b], rtol=rtol, atol=0):
            ok = np.isclose(y[a:b], ref[a:b], rtol=rtol, atol=0)
            i = a + int(np.argmax(~ok))
            raise BenchError("y[%d] = %r, expected %r"
                             % (i, float(y[i]), float(ref[i])))


def _format_error(e):
    msg = str(e)
    if len(msg) > 2000:
        msg = msg[:2000] + "..."
    return "%s: %s" % (type(e).__name__, msg)


def main():
    global _OWNER_PID, _PROTO, _STATE
    _OWNER_PID = os.getpid()

    # Keep the real stdout for the protocol only; everything else that
    # writes to fd 1 (warnings, workers, C extensions) goes to stderr.
    proto_fd = os.dup(1)  # non-inheritable
    os.dup2(2, 1)
    sys.stdout = open(1, "w", closefd=False, buffering=1)
    _PROTO = open(proto_fd, "w", buffering=1, encoding="utf-8")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    try:
        _set_pdeathsig()
    except SystemExit:
        return 0

    # Let workers import this file as `joblib_bench` (without leaving a
    # __pycache__ directory next to it).
    sys.dont_write_bytecode = True
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    pp = os.environ.get("PYTHONPATH", "")
    if _HERE not in pp.split(os.pathsep):
        os.environ["PYTHONPATH"] = _HERE + (os.pathsep + pp if pp else "")

    try:
        import warnings
        import numpy
        import joblib
        import joblib.parallel  # noqa: F401
        import joblib_bench as T
        if T.np is None:
            raise ImportError("numpy could not be imported by joblib_bench")
        # Each distinct warning once, on stderr.
        warnings.simplefilter("once")
    except BaseException as e:
        send({"ready": False, "error": _format_error(e)})
        return 0

    send({"ready": True, "python": platform.python_version(),
          "joblib": joblib.__version__, "numpy": numpy.__version__})
    _STATE = State(joblib, T)

    try:
        while True:
            line = sys.stdin.readline()
            if not line:
                break  # EOF: the parent is done or gone
            line = line.strip()
            if not line:
                continue
            rid = None
            try:
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise BenchError("request is not a JSON object")
                rid = req.get("id")
                cmd = req.get("command")
                if cmd is not None:
                    if cmd == "quit":
                        send({"id": rid, "bye": True})
                        break
                    if cmd == "ping":
                        send({"id": rid, "pong": True})
                        continue
                    raise BenchError("unknown command %r" % (cmd,))
                reply = {"id": rid}
                reply.update(_STATE.handle(req))
                reply["error"] = None
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:
                if _VERBOSE:
                    traceback.print_exc()
                _STATE._keep = ()
                reply = {"id": rid, "seconds": None, "result": None,
                         "tasks": None, "error": _format_error(e)}
            send(reply)
    except BrokenPipeError:
        pass
    finally:
        _cleanup()
    return 0


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        _cleanup()
    sys.exit(rc)
