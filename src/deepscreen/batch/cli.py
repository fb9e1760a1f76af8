"""`deepscreen batch`: its options and messages. Imports nothing heavy until it runs, since every `deepscreen`
command imports this module to register it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..config import Sampling, Thresholds


def batch(
    source: Path = typer.Argument(..., metavar="INPUT", help="A folder (walked recursively), a text file of paths "
                                  "(one per line), or a .csv/.parquet manifest with a 'path' column and optionally "
                                  "'label' (real/fake), which adds an evaluation."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: results.parquet, errors.jsonl, summary.json "
                             "(and roc.png, reliability.png with labels). Run again with the same folder to resume."),
    engine: str = typer.Option("local", help="local: a process pool on this machine; ray: Ray Data (a local Ray "
                               "runtime, or the cluster at --ray-address)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Worker processes, each loading the models once "
                                          "(default: the cores of this machine)."),
    threads: Optional[int] = typer.Option(None, "--threads-per-worker", min=1,
                                          help="CPU threads (and Ray CPUs) per worker (default: cores / workers)."),
    ray_address: Optional[str] = typer.Option(None, help="Join this Ray cluster (e.g. ray://head:10001 or auto) "
                                              "instead of starting a local runtime; needs --engine ray."),
    ray_prepare_workers: Optional[int] = typer.Option(None, min=1, help="Ray: actors decoding files and finding "
                                                      "faces and speech, --threads-per-worker CPUs each (default: "
                                                      "--workers)."),
    ray_judge_workers: Optional[int] = typer.Option(None, min=0, help="Ray: actors running the detectors in a "
                                                    "second stage (default: 0, one stage: each --ray-prepare-workers "
                                                    "actor also runs them, the faster layout on one machine; "
                                                    "--workers where --ray-judge-cpus is given)."),
    ray_judge_cpus: Optional[int] = typer.Option(None, min=1, help="Ray: CPUs (and threads) per detector actor "
                                                 "(default: --threads-per-worker)."),
    frames: int = typer.Option(Sampling.frames, help="Video frames analysed, spread evenly over the clip."),
    max_fps: float = typer.Option(Sampling.max_fps, help="At most this many analysed frames per second of video."),
    threshold: float = typer.Option(Thresholds.manipulated, "--threshold", min=0.0, max=1.0,
                                    help="Label a file manipulated from this probability on."),
    suspicious_from: float = typer.Option(Thresholds.suspicious, "--suspicious-from", min=0.0, max=1.0,
                                          help="Label it suspicious from this probability on, below --threshold."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="When resuming, scan again the files that "
                                      "could not be read last time (by default they count as done)."),
    flush_rows: int = typer.Option(32, min=1, hidden=True, help="Rows per part file (tests set it low)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no table."),
):
    """Screen a whole collection, resumably: every file through the same scan core as `scan`. Exit code as
    `scan`'s: 0 nothing flagged, 1 something flagged, 2 some file could not be read (listed in errors.jsonl)."""
    from ..config import ScanConfig
    from .inputs import InputError
    from .run import BatchOptions, print_summary, run_batch
    from .worker import WorkerStartError

    try:
        bands = Thresholds(suspicious=suspicious_from, manipulated=threshold)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="'--suspicious-from' / '--threshold'") from None
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"{engine!r}: use local or ray", param_hint="'--engine'")
    for flag, value in (("--ray-address", ray_address), ("--ray-prepare-workers", ray_prepare_workers),
                        ("--ray-judge-workers", ray_judge_workers), ("--ray-judge-cpus", ray_judge_cpus)):
        if value is not None and engine != "ray":
            raise typer.BadParameter("needs --engine ray", param_hint=f"'{flag}'")
    if ray_judge_workers == 0 and ray_judge_cpus is not None:
        raise typer.BadParameter("needs a judge stage: with --ray-judge-workers 0 the detectors run in the "
                                 "--ray-prepare-workers actors, on --threads-per-worker CPUs",
                                 param_hint="'--ray-judge-cpus'")
    config = ScanConfig(sampling=Sampling(frames=frames, max_fps=max_fps), thresholds=bands, keep_crops=False)
    opts = BatchOptions(source=source, out=out, engine=engine, workers=workers, threads=threads,
                        ray_address=ray_address, ray_prepare_workers=ray_prepare_workers,
                        ray_judge_workers=ray_judge_workers, ray_judge_cpus=ray_judge_cpus, config=config,
                        retry_errors=retry_errors, flush_rows=flush_rows, progress=not quiet)
    try:
        code, summary = run_batch(opts)
    except (InputError, WorkerStartError) as err:
        print(f"deepscreen: error: {err}", file=sys.stderr)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        print(f"deepscreen: interrupted; the files done so far are kept in {out}: run the same command to finish",
              file=sys.stderr)
        raise typer.Exit(130) from None
    if not quiet:
        print_summary(summary)
    raise typer.Exit(code)
