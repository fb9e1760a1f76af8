"""Where the scans run. Both engines take items and yield results rows in the order they finish; both run the
whole scan core (`Worker.scan` -> `Scanner.scan`) once per file inside long-lived workers that load the models
once. The driver (run.py) does all the writing, so the two engines write the same files by construction.

local: a process pool on this machine (spawned, not forked: torch, onnxruntime and MediaPipe hold threads that a
       fork would copy half-alive).
ray:   Ray Data, `map_batches` over an actor pool: each actor is a Worker; `workers` actors with `threads` CPUs
       each, on a local Ray runtime or an existing cluster (`address`).
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


class RayEngine:
    name = "ray"

    def __init__(self, workers: int, threads: int, config: ScanConfig, address: str | None = None,
                 batch_size: int = 4):
        self.workers, self.threads, self.config, self.address = workers, threads, config, address
        self.batch_size = batch_size
        self._started_ray = False

    def __enter__(self):
        import ray

        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:  # a private local runtime, sized so that every actor fits at once; "local", or ray.init would
                # join a cluster that `ray start` once ran on this machine (it leaves its address in /tmp/ray)
                ray.init(address="local", num_cpus=max(os.cpu_count() or 1, self.workers * self.threads), **kwargs)
            self._started_ray = True
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-run INFO lines would break the bar
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver draws its own bar
        ctx.print_on_execution_start = False
        return self

    def __exit__(self, *exc):
        if self._started_ray:
            import ray

            ray.shutdown()

    def setup_key(self) -> str:
        """One short task on the cluster (it loads the models once more): the driver never loads them."""
        import ray

        try:
            return ray.get(ray.remote(num_cpus=self.threads)(_remote_key).remote(self.config, self.threads))
        except ray.exceptions.RayTaskError as err:
            cause = err.cause if isinstance(err.cause, Exception) else err
            raise W.WorkerStartError(f"a Ray worker could not load the scanner: {type(cause).__name__}: "
                                     f"{cause}") from None

    def run(self, items: list[Item], key: str) -> Iterator[dict]:
        # A crash below Python kills an actor; Ray restarts it and retries the batch, then gives the block up.
        # Files of a given-up block are scanned again one per block; a file that still kills its actor is the
        # culprit and becomes an error row, as in the local engine. (Ray's default, retrying forever, would hang
        # the whole batch on one such file.)
        done: set[str] = set()
        for row in self._pass(items, isolate=False):
            done.add(row["path"])
            yield row
        missing = [i for i in items if i.path not in done]
        if missing:
            log.warning("%d files were in batches whose Ray actor died; scanning them again one by one", len(missing))
            for row in self._pass(missing, isolate=True):
                done.add(row["path"])
                yield row
            for item in missing:
                if item.path not in done:
                    yield crash_row(item.path, item.truth, key)

    def _pass(self, items: list[Item], isolate: bool) -> Iterator[dict]:
        if not items:
            return
        import warnings

        import ray

        ray.data.DataContext.get_current().max_errored_blocks = -1  # a given-up block is skipped, not fatal
        # Small blocks so rows stream back (and get written) while the run goes on, not all at the end.
        blocks = len(items) if isolate else \
            max(1, min(len(items), max(4 * self.workers, len(items) // (2 * self.batch_size))))
        ds = ray.data.from_items([{"path": i.path, "truth": i.truth or ""} for i in items],
                                 override_num_blocks=blocks)
        with warnings.catch_warnings():  # max_task_retries as a keyword is deprecated after the pinned Ray 2.60
            warnings.simplefilter("ignore")
            ds = ds.map_batches(_RayScan, fn_constructor_args=(self.config, self.threads),
                                batch_size=1 if isolate else self.batch_size, batch_format="pyarrow",
                                num_cpus=self.threads, compute=ray.data.ActorPoolStrategy(size=self.workers),
                                max_task_retries=1)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield from batch.to_pylist()


def _remote_key(config: ScanConfig, threads: int) -> str:
    return W.Worker(config, threads).key


class _RayScan:
    """A Ray Data actor: one Worker (models loaded once), fed a few files per call."""

    def __init__(self, config: ScanConfig, threads: int):
        self.worker = W.Worker(config, threads)

    def __call__(self, batch):
        from .rows import table

        rows = [self.worker.scan(p, t or None) for p, t in zip(batch["path"].to_pylist(), batch["truth"].to_pylist())]
        return table(rows)


def make_engine(name: str, workers: int, threads: int, config: ScanConfig, address: str | None = None):
    if name == "local":
        if address:
            raise ValueError("--ray-address needs --engine ray")
        return LocalEngine(workers, threads, config)
    if name == "ray":
        return RayEngine(workers, threads, config, address)
    raise ValueError(f"unknown engine {name!r}: use {' or '.join(ENGINES)}")
