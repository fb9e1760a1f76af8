"""What runs inside a batch worker process (a pool process or a Ray actor): one Scanner, loaded once, then
one call of the scan core per file.

Each worker gets a fixed number of threads: N workers on N cores with the libraries' default (all cores each)
would fight over the cores, and the same thread count in both engines keeps their results identical.
"""

from __future__ import annotations

import os
import signal
import time

from ..config import ScanConfig
from .rows import setup_key, verdict_row

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# For the tests: a file whose path contains this variable's text kills its worker process, as a crash inside a
# native decoder would. Nothing in Python can stand in for that: Scanner.scan turns every exception into a verdict.
CRASH_ON_ENV = "DEEPSCREEN_BATCH_CRASH_ON"


class Worker:
    def __init__(self, config: ScanConfig, threads: int):
        for var in _THREAD_VARS:  # before torch / onnxruntime start their pools
            os.environ[var] = str(threads)
        import torch

        torch.set_num_threads(threads)  # the face CNN's onnxruntime session takes its thread count from torch
        from ..scan import Scanner

        self.scanner = Scanner(config)
        self.key = setup_key(self.scanner.models(), config)

    def scan(self, path: str, truth: str | None) -> dict:
        crash_on = os.environ.get(CRASH_ON_ENV)
        if crash_on and crash_on in path:
            os._exit(70)  # fault injection for the tests, see CRASH_ON_ENV
        try:
            st = os.stat(path)  # before the scan: a file changed while it is scanned looks changed on resume
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime = None  # the scan core says what is wrong with the path
        verdict = self.scanner.scan(path)
        return verdict_row(verdict, truth, size, mtime, self.key, scanned_at=round(time.time(), 3))


class WorkerStartError(RuntimeError):
    """A worker could not load the scanner (e.g. model weights missing); the message says why."""


# The local engine's pool calls these module-level functions (picklable) in its processes.
_worker: Worker | None = None
_start_error: str | None = None


def init_process(config: ScanConfig, threads: int) -> None:
    # An exception escaping a pool initializer only says "BrokenProcessPool": keep the reason for the driver.
    global _worker, _start_error
    # Ctrl-C reaches the whole process group. A pool worker that took it would report it as that file's
    # failure and go on with the next; the driver alone decides, and stops the workers (LocalEngine._stop).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _worker = Worker(config, threads)
    except Exception as err:  # noqa: BLE001
        _start_error = f"a worker could not load the scanner: {type(err).__name__}: {err}"


def process_key() -> str:
    if _worker is None:
        raise WorkerStartError(_start_error)
    return _worker.key


def process_scan(path: str, truth: str | None) -> dict:
    if _worker is None:
        raise WorkerStartError(_start_error)
    return _worker.scan(path, truth)
