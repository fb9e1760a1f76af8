"""The Ray engine: Ray Data runs the scan core as two stages of long-lived actors, each loading the models once:

  prepare: decode, find faces and speech (`Scanner.prepare`), on `prepare_workers` actors of `prepare_cpus` CPUs;
  judge:   the detectors and the verdict (`Scanner.judge`), on `judge_workers` actors of `judge_cpus` CPUs, which
           write the results rows.

A file goes from one stage to the next as a pickled `Prepared` (about 80 kB for a photo, 1 MB for a 3 s clip: the
aligned face crops), a few files per call (`batch_size`), so the detectors' stage can be sized, and placed, on its
own. The driver (run.py) writes the rows that come back, as with the local engine.

With `judge_workers` 0 the run is one stage: each of the `prepare_workers` actors prepares and judges its files
(`ScanStage`), as a local worker does. Two stages pay off where the detectors want other machines or more CPUs
than the decoders; where both share a machine's few cores, one stage does not hand files over or leave an actor
idle waiting for the other stage (benchmarks/bench_batch.py compares them as ray and ray1).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from ..config import ScanConfig
from . import worker as W
from .inputs import Item
from .rows import crash_row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayStages:
    """Actors per stage, and the CPUs each actor reserves (also its libraries' thread count)."""

    prepare_workers: int
    prepare_cpus: int
    judge_workers: int
    judge_cpus: int
    # Files per call of a stage. Small: a stage holds at most this many Prepared per call in flight (see
    # MAX_CALLS_PER_ACTOR), and rows stream back to be written while the run goes on, not all at the end.
    batch_size: int = 4

    @property
    def one_stage(self) -> bool:
        return self.judge_workers == 0

    @property
    def cpus(self) -> int:
        return self.prepare_workers * self.prepare_cpus + self.judge_workers * self.judge_cpus

    def describe(self) -> dict:
        return {"prepare_workers": self.prepare_workers, "prepare_cpus": self.prepare_cpus,
                "judge_workers": self.judge_workers, "judge_cpus": self.judge_cpus, "batch_size": self.batch_size}


# Calls queued on one actor at a time: with batch_size, bounds the Prepared waiting per actor (16 files: a few MB).
# Ray's default, 4: with 2, 200 short clips ran 9-16 % slower than the local engine, with 4 5-8 % (three or four
# runs each; +13 % in a later full-size run, docs/batch.md): an actor finishing a call found the next one waiting.
MAX_CALLS_PER_ACTOR = 4
# Calls each actor gets at least, where batch_size would give it fewer: when the last calls of a run are handed
# out, one actor may still work through a whole call while the others have nothing left, so a short run (a few
# dozen clips of 0.2 s each) with batches of 4 lost up to a fifth of its span to that tail. Smaller batches keep
# the tail under about a sixteenth of the span.
MIN_CALLS_PER_ACTOR = 8


class RayEngine:
    name = "ray"

    def __init__(self, stages: RayStages, config: ScanConfig, address: str | None = None):
        self.stages, self.config, self.address = stages, config, address
        self._started_ray = False

    def __enter__(self):
        import ray

        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:  # a private local runtime. "local", or ray.init would join a cluster that `ray start` once ran
                # on this machine (it leaves its address in /tmp/ray). Sized so that both stages' actors fit at
                # once, even past the cores: the two stages take turns on each file, so they share the cores.
                ray.init(address="local", num_cpus=max(os.cpu_count() or 1, self.stages.cpus), **kwargs)
            self._started_ray = True
        self._check_room(ray.cluster_resources().get("CPU", 0))
        # Ray Data's INFO lines (and its note that its progress bars are off) would break the driver's bar. It
        # sets its loggers' level again at times, from this variable.
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver draws its own bar
        ctx.print_on_execution_start = False
        ctx.max_errored_blocks = -1  # a given-up block is skipped, not fatal (see run)
        return self

    def __exit__(self, *exc):
        if self._started_ray:
            import ray

            ray.shutdown()

    def _check_room(self, cluster_cpus: float) -> None:
        # Ray Data would wait forever for actors that cannot be placed: say so at once instead.
        s = self.stages
        if cluster_cpus < s.cpus:
            self.__exit__()
            need = (f"one stage {s.prepare_workers} x {s.prepare_cpus}" if s.one_stage else
                    f"prepare {s.prepare_workers} x {s.prepare_cpus}, judge {s.judge_workers} x {s.judge_cpus}")
            raise W.WorkerStartError(
                f"the Ray cluster has {cluster_cpus:g} CPUs and the stages need {s.cpus} ({need}): lower "
                f"--ray-prepare-workers, --ray-judge-workers, --threads-per-worker or --ray-judge-cpus, or add nodes")

    def describe(self) -> dict:
        return {"ray_stages": self.stages.describe()}

    def setup_key(self) -> str:
        """One short task on the cluster (it loads the models once more): the driver never loads them."""
        import ray

        cpus = self.stages.prepare_cpus if self.stages.one_stage else self.stages.judge_cpus
        try:
            return ray.get(ray.remote(num_cpus=cpus)(_remote_key).remote(self.config, cpus))
        except ray.exceptions.RayTaskError as err:
            cause = err.cause if isinstance(err.cause, Exception) else err
            raise W.WorkerStartError(f"a Ray worker could not load the scanner: {type(cause).__name__}: "
                                     f"{cause}") from None

    def run(self, items: list[Item], key: str) -> Iterator[dict]:
        # A crash below Python kills an actor, in either stage; Ray restarts it and retries the call once, then
        # gives the block up. Files of a given-up block are sent again one per block; a file that still kills
        # its actor is the culprit and becomes an error row, as in the local engine. (Ray's default, retrying
        # forever, would hang the whole batch on one such file.)
        done: set[int] = set()
        for index, row in self._pass(list(enumerate(items)), isolate=False):
            done.add(index)
            yield row
        missing = [(k, item) for k, item in enumerate(items) if k not in done]
        if missing:
            log.warning("%d files were in batches whose Ray actor died; scanning them again one by one", len(missing))
            for index, row in self._pass(missing, isolate=True):
                done.add(index)
                yield row
            for k, item in missing:
                if k not in done:
                    yield crash_row(item.path, item.truth, key)

    def _pass(self, items: list[tuple[int, Item]], isolate: bool) -> Iterator[tuple[int, dict]]:
        """(index in INPUT's todo list, row) of each file that came through both stages, in the order they did.
        Files are tracked by index, not path: a row's path is the shown one (escaped if not UTF-8)."""
        if not items:
            return
        import ray

        s = self.stages
        size = 1 if isolate else call_size(len(items), s.batch_size, s.prepare_workers)
        blocks = len(items) if isolate else \
            max(1, min(len(items), max(4 * (s.prepare_workers + s.judge_workers), len(items) // (2 * size))))
        ds = ray.data.from_items([{"item": k, "path": os.fsencode(i.path), "truth": i.truth or ""} for k, i in items],
                                 override_num_blocks=blocks)
        with warnings.catch_warnings():  # max_task_retries as a keyword is deprecated after the pinned Ray 2.60
            warnings.simplefilter("ignore")
            plan = [(ScanStage, s.prepare_workers, s.prepare_cpus)] if s.one_stage else \
                [(PrepareStage, s.prepare_workers, s.prepare_cpus), (JudgeStage, s.judge_workers, s.judge_cpus)]
            for stage, workers, cpus in plan:
                ds = ds.map_batches(stage, fn_constructor_args=(self.config, cpus), batch_size=size,
                                    batch_format="pyarrow", num_cpus=cpus, max_task_retries=1,
                                    compute=ray.data.ActorPoolStrategy(
                                        size=workers, max_tasks_in_flight_per_actor=MAX_CALLS_PER_ACTOR))
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            indices = batch.column("item").to_pylist()
            yield from zip(indices, batch.drop_columns(["item"]).to_pylist())


def call_size(files: int, batch_size: int, actors: int) -> int:
    """Files per call: `batch_size`, or fewer where that would give each actor under MIN_CALLS_PER_ACTOR calls."""
    return max(1, min(batch_size, files // (MIN_CALLS_PER_ACTOR * max(1, actors))))


def _remote_key(config: ScanConfig, threads: int) -> str:
    return W.Worker(config, threads).key


class PrepareStage:
    """Ray Data actor of the first stage: decodes files and finds their faces and speech (a Worker: models
    loaded once), a few files per call; passes on each file's pickled Prepared."""

    def __init__(self, config: ScanConfig, threads: int):
        self.worker = W.Worker(config, threads)

    def __call__(self, batch):
        import pyarrow as pa

        paths = [os.fsdecode(p) for p in batch.column("path").to_pylist()]
        size, mtime, prepared = zip(*(self.worker.prepare(p) for p in paths)) if paths else ((), (), ())
        return batch.append_column("size_bytes", pa.array(size, pa.int64())) \
            .append_column("mtime_ns", pa.array(mtime, pa.int64())) \
            .append_column("prepared", pa.array(prepared, pa.large_binary()))


class JudgeStage:
    """Ray Data actor of the second stage: the detectors and the verdict (a Worker: models loaded once); returns
    the files' results rows, each with its index in INPUT's todo list."""

    def __init__(self, config: ScanConfig, threads: int):
        self.worker = W.Worker(config, threads)

    def __call__(self, batch):
        from .rows import table

        rows = [self.worker.judge(os.fsdecode(path), truth or None, size, mtime, prepared)
                for path, truth, size, mtime, prepared in zip(
                    *(batch.column(c).to_pylist() for c in ("path", "truth", "size_bytes", "mtime_ns", "prepared")))]
        return table(rows).append_column("item", batch.column("item"))


class ScanStage:
    """Ray Data actor of a one-stage run: prepares and judges its files in the same process (a Worker: models
    loaded once), as the two stages above would one after the other, with no Prepared handed over."""

    def __init__(self, config: ScanConfig, threads: int):
        self.worker = W.Worker(config, threads)

    def __call__(self, batch):
        from .rows import table

        rows = [self.worker.judge(os.fsdecode(path), truth or None, *self.worker.prepare(os.fsdecode(path)))
                for path, truth in zip(*(batch.column(c).to_pylist() for c in ("path", "truth")))]
        return table(rows).append_column("item", batch.column("item"))
