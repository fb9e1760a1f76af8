"""Where the scans run. Both engines take items and yield results rows in the order they finish; both run the
scan core inside long-lived workers that load the models once. The driver (run.py) does all the writing, so the
two engines write the same files by construction.

local: a process pool on this machine (spawned, not forked: torch, onnxruntime and MediaPipe hold threads that a
       fork would copy half-alive); each worker runs the whole scan of a file (`Worker.scan` -> `Scanner.scan`).
ray:   Ray Data, two stages of actors, `Scanner.prepare` then `Scanner.judge` (ray_engine.py), on a local Ray
       runtime or an existing cluster.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from ..config import ScanConfig
from . import worker as W
from .inputs import Item
from .rows import crash_row

log = logging.getLogger(__name__)
ENGINES = ("local", "ray")


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


class LocalEngine:
    name = "local"

    def __init__(self, workers: int, threads: int, config: ScanConfig):
        self.workers, self.threads, self.config = workers, threads, config
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self):
        self._start()
        return self

    def __exit__(self, exc_type, *exc):
        self._stop(abort=exc_type is not None)

    def _start(self) -> None:
        self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=W.init_process, initargs=(self.config, self.threads))

    def _stop(self, abort: bool = False) -> None:
        if self.pool is None:
            return
        if abort:
            # Ctrl-C or a failure in the driver: the scans in flight are not wanted (their rows could no longer be
            # written). Workers ignore SIGINT, so they are stopped here; the pool keeps its processes privately.
            for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
                proc.terminate()
        self.pool.shutdown(wait=not abort, cancel_futures=True)
        self.pool = None

    def describe(self) -> dict:
        return {}

    def setup_key(self) -> str:
        """Asked of the workers (they have the models loaded anyway), so the driver never loads them itself. One
        question per worker: the pool starts a process per pending call, so all of them load their models now,
        side by side, instead of the later ones while the first is already scanning."""
        keys = {f.result() for f in [self.pool.submit(W.process_key) for _ in range(self.workers)]}
        return keys.pop()

    def run(self, items: list[Item], key: str) -> Iterator[dict]:
        queue = deque(items)
        # Files in flight when a worker died. The pool cannot tell which one killed it, so each is scanned again
        # alone: one that kills a worker on its own is the culprit, reported as an error row and not retried.
        suspects: deque[Item] = deque()
        running: dict[Future, Item] = {}
        alone: set[Future] = set()
        while queue or suspects or running:
            if suspects:
                if not running:
                    fut = self.pool.submit(W.process_scan, suspects[0].path, suspects[0].truth)
                    running[fut] = suspects.popleft()
                    alone.add(fut)
            else:  # a few files queued per worker keeps every worker busy without a future per file
                while queue and len(running) < 2 * self.workers:
                    item = queue.popleft()
                    running[self.pool.submit(W.process_scan, item.path, item.truth)] = item
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for fut in finished:
                item = running.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    broken = True
                    if fut in alone:
                        yield crash_row(item.path, item.truth, key)
                    else:
                        suspects.append(item)
                alone.discard(fut)
            if broken:
                suspects.extend(running.values())
                running.clear()
                alone.clear()
                log.warning("a worker process died; restarting the pool and retrying its %d files one by one",
                            len(suspects))
                self._stop()
                self._start()


def make_engine(name: str, workers: int, threads: int, config: ScanConfig, address: str | None = None,
                prepare_workers: int | None = None, judge_workers: int | None = None, judge_cpus: int | None = None):
    """The engine `name`. Ray runs in one stage by default (`workers` actors of `threads` CPUs, each preparing and
    judging its files): measured faster than two stages at every size on one machine (docs/batch.md). Given
    `judge_workers` (or only `judge_cpus`: the detectors then get `workers` actors of their own), in two."""
    ray_options = {"--ray-address": address, "--ray-prepare-workers": prepare_workers,
                   "--ray-judge-workers": judge_workers, "--ray-judge-cpus": judge_cpus}
    if name == "local":
        if given := [flag for flag, value in ray_options.items() if value is not None]:
            raise ValueError(f"{', '.join(given)} needs --engine ray")
        return LocalEngine(workers, threads, config)
    if name == "ray":
        from .ray_engine import RayEngine, RayStages

        if judge_workers is None:
            judge_workers = workers if judge_cpus else 0
        stages = RayStages(prepare_workers or workers, threads, judge_workers, judge_cpus or threads)
        if stages.one_stage and judge_cpus:
            raise ValueError("--ray-judge-cpus needs a judge stage: with --ray-judge-workers 0 the detectors run in "
                             "the --ray-prepare-workers actors, on --threads-per-worker CPUs")
        return RayEngine(stages, config, address)
    raise ValueError(f"unknown engine {name!r}: use {' or '.join(ENGINES)}")
