"""Command line: `deepscreen scan | evaluate | train | synthesize`. Every command calls the library; none re-implements it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .config import MODELS_DIR, PROJECT_ROOT, SHARED_DIR, Sampling, Thresholds
from .training.face_flags import FLAGS as FACE_FLAGS, flag_default as face_flag
from .training.recipe import VOICE, FlagError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Screen photos and videos for deepfakes: a calibrated probability, where, when and why.")


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"deepscreen {__version__}")
        raise typer.Exit()


@app.callback()
def _group(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """deepscreen: screen media for deepfakes."""


def _given(ctx: typer.Context, names) -> dict:
    """The options among `names` that the command line set (not left at their defaults)."""
    # By name: typer carries its own copy of click's ParameterSource.
    return {n: ctx.params[n] for n in names if getattr(ctx.get_parameter_source(n), "name", "") == "COMMANDLINE"}


def _usage_error(err: Exception):
    print(f"deepscreen: error: {err}", file=sys.stderr)
    return typer.Exit(2)


def _face_option(flag: str):
    """A `train` option whose default is the face recipe's value (read through face_flags, as training reads it)."""
    return typer.Option(face_flag(flag), help=FACE_FLAGS[flag].help)


@app.command()
def train(
    ctx: typer.Context,
    data: Path = typer.Option(SHARED_DIR / "data/faces/lfw", help="Real faces, one folder per person."),
    out: Path = typer.Option(MODELS_DIR / "face_blend.safetensors", help="Where to write the weights."),
    work: Path = typer.Option(PROJECT_ROOT / ".cache/train", help="Checkpoints, logs, landmark cache."),
    steps: int = _face_option("steps"),
    stage2_steps: int = _face_option("stage2_steps"),
    stage3_steps: int = _face_option("stage3_steps"),
    init: Path = typer.Option(None, help="Skip stage 1: run stage 2 from these weights."),
    init3: Path = typer.Option(None, help="Skip stages 1-2: run stage 3 from these weights."),
    shared: Path = typer.Option(SHARED_DIR, help="Folder with data/faces/world and data/video (stage 3)."),
    stop_early: bool = typer.Option(False, "--stop-early", help="The short recipe: stop each cycle where the "
                                    "recipe says (11/15 of stage 1, half of stage 2: 4400 + 600 steps) and keep "
                                    "stage 2's last weights."),
    lr_scale: float = _face_option("lr_scale"),
    donor_p: float = _face_option("donor_p"),
    lowres_p: float = _face_option("lowres_p"),
    seed: int = _face_option("seed"),
    precision: str = _face_option("precision"),
    grade_p: float = _face_option("grade_p"),
    blur_p: float = _face_option("blur_p"),
    frozen_blocks: int = _face_option("frozen_blocks"),
    rerender_p: float = _face_option("rerender_p"),
    painters: str = _face_option("painters"),
    channel_parts: str = _face_option("channel_parts"),
    pool_size: int = _face_option("pool_size"),
):
    """Train the face-blend detector on forgeries made from real faces: the committed recipe
    (src/deepscreen/training/recipes/face_blend.toml, models/face_blend.md) unless a flag changes a value of it;
    each stage resumes from WORK if interrupted."""
    from .training.face_stages import train_face

    try:
        train_face(_given(ctx, FACE_FLAGS), data, out, work, init=init, init3=init3, shared=shared,
                   stop_early=stop_early)
    except FlagError as err:
        raise _usage_error(err) from None


@app.command("train-voice")
def train_voice(
    ctx: typer.Context,
    out: Path = typer.Option(MODELS_DIR / "voice.safetensors", help="Where to write the weights."),
    work: Path = typer.Option(PROJECT_ROOT / ".cache/voice", help="Generated copies, checkpoints, reports."),
    steps: int = typer.Option(VOICE.steps, help="Optimiser steps of 32 two-second windows (16 real + 16 synthetic)."),
    exclude: list[str] = typer.Option([], help="Leave this generator out of training (repeatable)."),
    add: list[str] = typer.Option([], help="Also train on this optional generator, e.g. world_hnm (repeatable)."),
    logo: bool = typer.Option(False, "--logo", help="Run every leave-one-generator-out model, print the table."),
    frontend: str = typer.Option(VOICE.frontend, help="Front end: linear (80 bands, shipped), linear_if (+ a phase "
                                 "channel), mel, spec (256 bins), or wave (learnt from the waveform)."),
    head: str = typer.Option(VOICE.head, help="Output head: linear (shipped) or oc (one-class softmax)."),
    augment: str = typer.Option(VOICE.augment, help="Training augmentation: none (shipped) or eq (random "
                                "equaliser)."),
    eval_only: bool = typer.Option(False, "--eval-only", help="No training: print the test table of the OUT weights "
                                   "(with voice_wave/voice_phase.safetensors beside them, each model and all of "
                                   "them as the scanner combines them)."),
    ensemble: bool = typer.Option(False, "--ensemble", help="Train the models the scanner combines (filterbank and "
                                  "phase novelty) and report each and the combination (the shipped recipe)."),
    seed: int = typer.Option(VOICE.seed),
):
    """Train the voice detector on real LibriSpeech and its vocoder copies: the voice recipe
    (src/deepscreen/training/recipes/voice.toml) unless a flag changes a value of it; resumes from WORK."""
    from .training.voice_runs import RECIPE_FLAGS, train_voice as run

    try:
        run(_given(ctx, RECIPE_FLAGS), out, work, exclude, add, logo=logo, ensemble=ensemble, eval_only=eval_only)
    except FlagError as err:
        raise _usage_error(err) from None


@app.command()
def scan(
    paths: list[Path] = typer.Argument(..., help="Files and folders (walked recursively); type is read from the bytes."),
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON object per file (JSON Lines) on stdout."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a self-contained HTML report here."),
    frames: int = typer.Option(Sampling.frames, help="Video frames analysed, spread evenly over the clip."),
    max_fps: float = typer.Option(Sampling.max_fps, help="At most this many analysed frames per second of video."),
    all_frames: bool = typer.Option(False, "--all-frames", help="Forensic mode: analyse every frame (slow)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no table; errors still go to stderr."),
    threshold: float = typer.Option(Thresholds.manipulated, "--threshold", min=0.0, max=1.0,
                                    help="Label a file manipulated from this probability on."),
    suspicious_from: float = typer.Option(Thresholds.suspicious, "--suspicious-from", min=0.0, max=1.0,
                                          help="Label it suspicious from this probability on, below --threshold."),
):
    """Scan photos, videos and sound files. Exit code: 0 nothing suspicious, 1 something flagged, 2 a file could not
    be read. Bands: docs/verdicts.md (where forgeries are rare, a higher --threshold flags fewer real files)."""
    from .config import ScanConfig
    from .media.errors import label
    from .report import to_json_line, write_html
    from .scan import expand_paths

    try:
        bands = Thresholds(suspicious=suspicious_from, manipulated=threshold)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="'--suspicious-from' / '--threshold'") from None
    config = ScanConfig(sampling=Sampling(frames=frames, max_fps=max_fps, all_frames=all_frames), thresholds=bands)
    files = list(expand_paths(paths))
    show_progress = not quiet and sys.stderr.isatty()
    scanner = _load_scanner(config)
    verdicts = []
    with _progress(show_progress) as progress:
        task = progress.add_task("files", total=len(files))
        frames_task = progress.add_task("frames", total=None)

        def on_frame(done: int, total: int) -> None:
            progress.update(frames_task, completed=done, total=total)

        for path in files:
            progress.update(task, description=f"scanning {label(Path(path.name))[:40]}")
            progress.reset(frames_task, total=None, description="  frames")
            v = scanner.scan(path, on_frame=on_frame)
            verdicts.append(v)
            progress.advance(task)
            if v.error:
                print(f"deepscreen: error: {v.error}", file=sys.stderr, flush=True)
            if json_lines:
                print(to_json_line(v), flush=True)
    if not json_lines and not quiet:
        _print_table(verdicts)
    if report:
        write_html(verdicts, report)
        if not quiet:
            print(f"report written to {report}", file=sys.stderr)
    raise typer.Exit(exit_code(verdicts))


def exit_code(verdicts) -> int:
    """Like an antivirus scanner: 2 if any file could not be scanned, else 1 if any was flagged, else 0."""
    if any(v.label == "error" for v in verdicts):
        return 2
    return 1 if any(v.flagged for v in verdicts) else 0


@app.command()
def evaluate(
    folder: Path = typer.Argument(..., help="A folder with real/ and fake/ subfolders (walked recursively)."),
    limit: int = typer.Option(0, help="Use at most this many files per class (0: all), picked evenly."),
    scores: Optional[Path] = typer.Option(None, help="Also write per-file scores to this CSV."),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
):
    """Scan a labelled folder and print AUC, EER, log-loss, accuracy at the operating threshold, and counts."""
    from .training.evaluate import evaluate as run

    print(run(_load_scanner(None), folder, limit=limit, scores_csv=scores, as_json=json_out,
              progress=sys.stderr.isatty()))


# `deepscreen batch`: its code is in deepscreen.batch (this import is light; the rest loads when it runs).
from .batch.cli import batch as _batch  # noqa: E402

app.command("batch")(_batch)


@app.command()
def synthesize(
    out: Path = typer.Argument(..., help="Output folder; real/ and fake/ are created in it."),
    data: Path = typer.Option(SHARED_DIR / "data/faces/lfw", help="Real faces, one folder per person."),
    split: str = typer.Option("test", help="Which people: train, val or test (split by person)."),
    limit: int = typer.Option(0, help="At most this many source images (0: all of the split)."),
    seed: int = typer.Option(2),
    method: str = typer.Option("sbi", help="sbi: self-blends (the kind the detector trains on); faceswap: classic "
                               "landmark face swaps with Poisson blending, a kind it never trains on."),
):
    """Write held-out forgeries and their real originals, for `deepscreen evaluate`."""
    from .training.evaluate import synthesize as run

    try:
        print(run(out, data, split, limit, seed, method, cache=PROJECT_ROOT / ".cache/train/lfw_landmarks.npz"))
    except FlagError as err:
        raise _usage_error(err) from None


def _load_scanner(config):
    from .detectors import DetectorUnavailable
    from .scan import Scanner

    try:
        return Scanner(config)
    except DetectorUnavailable as err:
        print(f"deepscreen: error: {err}", file=sys.stderr)
        raise typer.Exit(2)


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True, disable=not enabled)


def _print_table(verdicts) -> None:
    from rich.console import Console
    from rich.table import Table

    from .verdict import percent

    colours = {"authentic": "green", "suspicious": "yellow", "manipulated": "red", "inconclusive": "dim",
               "error": "magenta"}
    table = Table(show_lines=False)
    for col in ("file", "verdict", "P(manipulated)", "why"):
        table.add_column(col)
    for v in verdicts:
        p = "-" if v.probability is None else percent(v.probability)
        table.add_row(v.path, f"[{colours[v.label]}]{v.label}[/]", p, v.summary)
    Console().print(table)


# `deepscreen serve` and `deepscreen keys`: the prescreening service, in deepscreen.service (light import).
from .service.cli import keys_app as _keys_app, serve as _serve  # noqa: E402

app.command("serve")(_serve)
app.add_typer(_keys_app, name="keys")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
