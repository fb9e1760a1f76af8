"""Keep freed memory for reuse (glibc malloc settings): a faster CPU training step.

A training step allocates and frees the same large activation buffers every step (up to ~80 MB each for a batch
of 32 crops at 80x80). glibc serves blocks over its mmap threshold (at most 32 MB) from fresh mappings and hands
the top of the heap back to the kernel when it is freed, so every step faults those pages in again, zeroed by the
kernel 4 KiB at a time. Turning mmap and trimming off keeps them in the heap: a float32 step ~1.2x faster on a
2-core AVX2 CPU (benchmarks/bench_train_step.py). The usual advice for PyTorch on CPUs (swap in jemalloc or
tcmalloc with LD_PRELOAD) needs a library and a restart; this is three mallopt calls. The cost: the process keeps
its peak memory until it exits, which suits a training run, not a long-lived service.
"""

from __future__ import annotations

import ctypes

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_KEEP = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 1 << 30, _M_TOP_PAD: 64 << 20}


def keep_freed_memory() -> bool:
    """Tell this process's malloc to keep freed memory (see the module's docstring). True where it took effect
    (glibc); False elsewhere (macOS, musl without these settings), where nothing changes."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded in this process
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in _KEEP.items())
