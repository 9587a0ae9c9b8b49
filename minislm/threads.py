"""How many BLAS threads minislm computes with: the cores no other process is using.

NumPy hands every matrix product to its BLAS (OpenBLAS in NumPy's wheels), which
by default starts one thread per core and splits each product between them. At
the synchronisation points inside a product an OpenBLAS thread spin-waits for the
others. On a quiet machine that is the fastest way to use every core; on a machine
where other processes keep the cores busy (a browser, a build, another job) a
thread that waits for a descheduled partner burns its time slice, and the
product becomes *slower* than on one thread. Measured here, with about 11
runnable tasks on 2 cores, one GPT-2-sized layer (four GEMMs of 512 tokens):
1 thread 0.27 s, 2 threads 0.54–0.57 s (torch's 2 threads: 0.44 s, its 1 thread
0.30 s). See bench/threads_bench.py and bench/RESULTS.md for the whole model.

The policy (`policy_threads`):

    n = MINISLM_THREADS                       if set (an integer ≥ 1)
        the BLAS' own setting                 if OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or
                                              MKL_NUM_THREADS is set (the user chose)
        1                                     for a model under 20 M parameters: its
                                              matrices are too small to share
        max(1, cores − busy)                  otherwise

where `cores` are the CPUs this process may run on (affinity mask, cgroup quota)
and `busy` the tasks of *other* processes running or waiting to run right now
(Linux: `procs_running` of /proc/stat minus this process' own running threads,
the median of five samples 1 ms apart). A quiet machine keeps every core; one
busy process per core leaves one thread.

Where it applies: `minislm.load` sets it for the model it loaded (so every
command of the CLI that reads a model starts with it), and the long-running
commands (eval, finetune, distill, compress, sweep) hold it for their model with
`blas_threads(auto_threads(model))`, inside which loading other models changes
nothing. Library code can call `apply()` at any time (e.g. when the machine's
load changed) or choose its own count with `blas_threads(n)`.
The count is set through `threadpoolctl` when it is installed, else by calling
OpenBLAS' `openblas_set_num_threads` (under the names NumPy's bundled
scipy-openblas exports) through ctypes; if neither works, nothing changes.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import statistics
import time

ENV_VAR = "MINISLM_THREADS"
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
OPENBLAS_SYMBOLS = (  # (get, set) under the names OpenBLAS builds export them
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
)
SMALL_MODEL_PARAMS = 20_000_000


# ------------------------------------------------------------------ the machine
def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask, lowered to a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def _running_tasks() -> int | None:
    """Tasks running or runnable on the whole machine right now (Linux), else None."""
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _own_running_threads() -> int:
    """Threads of this process in state R (this one, and BLAS threads still spinning)."""
    count = 0
    try:
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            count += state == "R"
    except OSError:
        return 1
    return max(1, count)


def busy_cores(samples: int = 5, interval: float = 0.001) -> int:
    """Tasks of other processes running or waiting for a CPU now (median of `samples`)."""
    seen = []
    for i in range(samples):
        running = _running_tasks()
        if running is None:
            return 0                                  # not Linux: no information, no change
        seen.append(max(0, running - _own_running_threads()))
        if i + 1 < samples:
            time.sleep(interval)
    return int(statistics.median(seen))


def free_cores() -> int:
    """Cores no other process is using right now (at least 1)."""
    return max(1, usable_cores() - busy_cores())


# ------------------------------------------------------------------ the policy
def user_setting() -> int | None:
    """The thread count the user chose: MINISLM_THREADS, else 0 if a BLAS variable is set
    (the BLAS read it at start-up: leave it alone), else None."""
    value = os.environ.get(ENV_VAR)
    if value:
        from .errors import ConfigError
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"${ENV_VAR}: expected a number of threads ≥ 1, found {value!r}")
        return n
    if any(os.environ.get(v) for v in BLAS_VARIABLES):
        return 0
    return None


def policy_threads(model=None) -> int | None:
    """The BLAS thread count of the policy (module docstring); None: leave the BLAS as is."""
    chosen = user_setting()
    if chosen is not None:
        return chosen or None
    if model is not None and model.num_params() < SMALL_MODEL_PARAMS:
        return 1
    return free_cores()


def auto_threads(model) -> int | None:
    """`policy_threads` for a model (the name the commands have always used)."""
    return policy_threads(model)


# ------------------------------------------------------------------ setting it
def _openblas_controls():
    """(get, set) functions of the OpenBLAS loaded in this process, or None."""
    try:
        with open("/proc/self/maps") as f:
            libraries = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    except OSError:
        return None
    for path in libraries:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in OPENBLAS_SYMBOLS:
            if hasattr(lib, get_name) and hasattr(lib, set_name):
                return getattr(lib, get_name), getattr(lib, set_name)
    return None


def set_threads(n: int) -> bool:
    """Set the BLAS thread count of this process to n; True if it could be set."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        threadpool_limits(limits=int(n), user_api="blas")
        return True
    controls = _openblas_controls()
    if controls is None:
        return False
    controls[1](int(n))
    return True


def apply(model=None) -> int | None:
    """Set the BLAS threads to `policy_threads(model)`; returns the count set (None: unchanged).

    Inside a `blas_threads(n)` block the count chosen there stands: nothing changes.
    """
    if _chosen:
        return None
    n = policy_threads(model)
    if n is not None and set_threads(n):
        return n
    return None


_chosen: list[int] = []          # thread counts of the enclosing `blas_threads` blocks


@contextlib.contextmanager
def blas_threads(n: int | None):
    """Run the block with the BLAS limited to n threads (None: leave it); yields True if set."""
    if n is None:
        yield False
        return
    _chosen.append(int(n))
    try:
        with _limited(int(n)) as limited:
            yield limited
    finally:
        _chosen.pop()


@contextlib.contextmanager
def _limited(n: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=int(n), user_api="blas"):
            yield True
        return
    controls = _openblas_controls()
    if controls is None:
        yield False
        return
    get, set_ = controls
    before = get()
    set_(int(n))
    try:
        yield True
    finally:
        set_(before)

