"""What runs inside a batch worker process (a pool process or a Ray actor): one Scanner, loaded once, then
the scan core per file: the whole scan (`scan`, the local engine), or its two steps apart (`prepare` and `judge`,
the Ray engine's two stages, possibly on different machines).

Each worker gets a fixed number of threads: N workers on N cores with the libraries' default (all cores each)
would fight over the cores, and the same thread count in both engines keeps their results identical.
"""

from __future__ import annotations

import os
import pickle
import signal
import time
from pathlib import Path

from ..config import ScanConfig
from ..verdict import Verdict
from .rows import setup_key, verdict_row

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# For the tests: a file whose path contains this variable's text kills its worker process, as a crash inside a
# native decoder would (in the Ray engine, while preparing it). Nothing in Python can stand in for that:
# Scanner.scan turns every exception into a verdict.
CRASH_ON_ENV = "DEEPSCREEN_BATCH_CRASH_ON"
# Likewise, but the Ray engine's worker dies while judging the file (the detectors' stage); the local engine's
# while scanning it.
CRASH_JUDGING_ON_ENV = "DEEPSCREEN_BATCH_CRASH_JUDGING_ON"
# For the tests, "TEXT|RELEASE": the local engine's worker that scans a file whose path contains TEXT writes its
# pid to RELEASE.pid and waits (at most 120 s) until RELEASE exists, so a test can kill a worker that certainly
# has a file in flight (a small collection is otherwise scanned before a test can find the worker).
HOLD_ON_ENV = "DEEPSCREEN_BATCH_HOLD_ON"


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
        _crash_if_asked(path, CRASH_ON_ENV)
        _crash_if_asked(path, CRASH_JUDGING_ON_ENV)
        _hold_if_asked(path)
        size, mtime = _stat(path)
        verdict = self.scanner.scan(path)
        return verdict_row(verdict, truth, size, mtime, self.key, scanned_at=round(time.time(), 3))

    def prepare(self, path: str) -> tuple[int | None, int | None, bytes]:
        """(size, mtime, the pickled Prepared) of a file: decoded, faces and speech found. Never raises: a
        failure of this worker's own code becomes the Prepared's error, which `judge` turns into an error row."""
        _crash_if_asked(path, CRASH_ON_ENV)
        size, mtime = _stat(path)
        try:
            prepared = self.scanner.prepare(path)
            return size, mtime, pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:  # noqa: BLE001  (bad input never stops a batch)
            from ..prepared import Prepared

            failed = Prepared(Path(path), error=_failure(path, "preparing", err))
            return size, mtime, pickle.dumps(failed, protocol=pickle.HIGHEST_PROTOCOL)

    def judge(self, path: str, truth: str | None, size: int | None, mtime: int | None, prepared: bytes) -> dict:
        """The results row of a file `prepare` made ready (possibly in another process). Never raises."""
        _crash_if_asked(path, CRASH_JUDGING_ON_ENV)
        try:
            verdict = self.scanner.judge(pickle.loads(prepared))
        except Exception as err:  # noqa: BLE001
            from ..media.errors import shown_path

            msg = _failure(path, "judging", err)
            verdict = Verdict(path, "", "unknown", None, "error", msg, error=msg)
            verdict.path, verdict.path_escaped = shown_path(Path(path))
        return verdict_row(verdict, truth, size, mtime, self.key, scanned_at=round(time.time(), 3))


def _stat(path: str) -> tuple[int | None, int | None]:
    # Before the scan: a file changed while it is scanned looks changed on resume.
    try:
        st = os.stat(path)
    except OSError:
        return None, None  # the scan core says what is wrong with the path
    return st.st_size, st.st_mtime_ns


def _crash_if_asked(path: str, variable: str) -> None:
    text = os.environ.get(variable)
    if text and text in path:
        os._exit(70)  # fault injection for the tests, see CRASH_ON_ENV


def _hold_if_asked(path: str) -> None:
    text, _, release = os.environ.get(HOLD_ON_ENV, "").partition("|")
    if not text or text not in path or os.path.exists(release):
        return
    Path(release + ".pid").write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)


def _failure(path: str, step: str, err: Exception) -> str:
    from ..media.errors import label

    return " ".join(f"{label(path)}: unexpected error while {step} it ({type(err).__name__}: {err})".split())


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
