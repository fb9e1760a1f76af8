"""The batch driver: read INPUT, work out what is left to do, hand it to an engine, write what comes back.

Resuming: a file is done when DIR holds a row for its path made under the same setup key (same model weights,
same settings) and the file is unchanged: same size and mtime as when it was scanned, or, failing that, the same
sha256 as the row's (a file copied or touched but not changed is not scanned again).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ScanConfig
from . import report
from .engines import default_threads, make_engine
from .inputs import Item, read_items
from .store import Store


@dataclass
class BatchOptions:
    source: Path
    out: Path
    engine: str = "local"
    workers: int | None = None  # default: the machine's cores
    threads: int | None = None  # per worker; default: cores // workers
    ray_address: str | None = None
    # Ray's two stages (ray_engine.py): actors per stage (default: workers each) and CPUs per judge actor
    # (default: threads); prepare actors take `threads` CPUs.
    ray_prepare_workers: int | None = None
    ray_judge_workers: int | None = None
    ray_judge_cpus: int | None = None
    config: ScanConfig = field(default_factory=ScanConfig)
    retry_errors: bool = False  # scan files that were unreadable last time again
    flush_rows: int = 32  # a part is written every this many rows...
    flush_s: float = 10.0  # ...or this many seconds, whichever comes first: a kill loses at most that much work
    progress: bool = True
    on_row: Callable[[dict], None] | None = None  # called with each row as it arrives (benchmarks time them)


def run_batch(opts: BatchOptions, console=None) -> tuple[int, dict]:
    """Run (or finish) a batch; returns (exit code, summary). Exit code as `scan`'s: 2 if a file could not be
    read, else 1 if one was flagged, else 0."""
    from rich.console import Console

    console = console or Console(stderr=True)
    started = time.perf_counter()
    items = read_items(opts.source, exclude=opts.out)
    workers = opts.workers or os.cpu_count() or 1
    threads = opts.threads or default_threads(workers)
    config = opts.config
    store = Store(opts.out)
    engine = make_engine(opts.engine, workers, threads, config, opts.ray_address, opts.ray_prepare_workers,
                         opts.ray_judge_workers, opts.ray_judge_cpus)
    tally = report.Tally()
    with engine:
        key = engine.setup_key()
        todo = pending(items, store.done_index(), key, opts.retry_errors)
        skipped = len(items) - len(todo)
        scan_started = time.perf_counter()
        writer = _PartWriter(store, opts.flush_rows, opts.flush_s)
        try:
            with _progress(opts.progress, console) as bar:
                task = bar.add_task("scanning", total=len(todo), rate="", errors="")
                for row in engine.run(todo, key):
                    writer.add(row)
                    tally.add(row)
                    if opts.on_row:
                        opts.on_row(row)
                    elapsed = time.perf_counter() - scan_started
                    bar.update(task, advance=1, rate=f"{tally.files / elapsed:.1f} files/s",
                               errors=f"{tally.errors} error{'s' * (tally.errors != 1)}")
        finally:
            writer.flush()  # rows already scanned are kept, even on Ctrl-C
        scan_s = time.perf_counter() - scan_started
    rows = store.compact([i.path for i in items], {i.path: i.truth for i in items})
    run = report.run_stats(tally, skipped, scan_s, time.perf_counter() - started, engine.name, workers, threads)
    run.update(engine.describe())
    summary = {"input": os.path.abspath(opts.source), **report.summarise(rows, run, config.thresholds)}
    report.write(Path(opts.out), summary, rows)
    code = 2 if summary["errors"] else 1 if summary["flagged"] else 0
    return code, summary


def pending(items: list[Item], done: dict[str, dict], key: str, retry_errors: bool = False) -> list[Item]:
    from ..media.sniff import file_sha256

    todo = []
    for item in items:
        row = done.get(item.path)
        if row is None or row["setup_key"] != key or (retry_errors and row["label"] == "error"):
            todo.append(item)
            continue
        try:
            st = os.stat(item.path)
        except OSError:
            todo.append(item)  # gone or unreadable now: the scan says which, in its row
            continue
        if (st.st_size, st.st_mtime_ns) == (row["size_bytes"], row["mtime_ns"]):
            continue
        if row["sha256"] and st.st_size == row["size_bytes"] and file_sha256(item.path) == row["sha256"]:
            continue
        todo.append(item)
    return todo


class _PartWriter:
    def __init__(self, store: Store, rows: int, seconds: float):
        self.store, self.max_rows, self.max_s = store, rows, seconds
        self.buffer: list[dict] = []
        self.since = time.monotonic()

    def add(self, row: dict) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= self.max_rows or time.monotonic() - self.since >= self.max_s:
            self.flush()

    def flush(self) -> None:
        self.store.write_part(self.buffer)
        self.buffer = []
        self.since = time.monotonic()


def _progress(enabled: bool, console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TextColumn("[magenta]{task.fields[errors]}"),
                    TimeRemainingColumn(), console=console, transient=True,
                    disable=not (enabled and console.is_terminal))


def print_summary(summary: dict, console=None) -> None:
    from rich.console import Console

    report.print_table(summary, console or Console(file=sys.stdout))
