"""Command line: `deepscreen scan | evaluate | train | synthesize`. Every command calls the library; none re-implements it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .config import MODELS_DIR, PROJECT_ROOT, SHARED_DIR, Sampling, Thresholds

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


@app.command()
def train(
    data: Path = typer.Option(SHARED_DIR / "data/faces/lfw", help="Real faces, one folder per person."),
    out: Path = typer.Option(MODELS_DIR / "face_blend.safetensors", help="Where to write the weights."),
    work: Path = typer.Option(PROJECT_ROOT / ".cache/train", help="Checkpoints, logs, landmark cache."),
    steps: Optional[int] = typer.Option(None, help="Stage 1: length of its learning-rate cycle in optimiser steps "
                                        "of 32 crops (16 real + 16 self-blended) from ImageNet weights; 6000 if "
                                        "not given."),
    stage2_steps: int = typer.Option(1200, help="Stage 2: length of a second, lower cycle with composites from "
                                     "other people; 0 stops after stage 1."),
    seed: int = typer.Option(0),
    init: Path = typer.Option(None, help="Skip stage 1: run stage 2 from these weights."),
    lr_scale: float = typer.Option(0.3, help="Stage 2's learning rates, as a multiple of stage 1's."),
    precision: str = typer.Option("auto", help="auto: bfloat16 where the CPU has it natively (AVX512-BF16, AMX; "
                                  "autocast, how the committed weights were made), float32 elsewhere (emulated "
                                  "bfloat16 is ~4x slower); or bfloat16 / float32."),
    donor_p: float = typer.Option(0.3, help="Stage 2: share of forgeries with a region from another person's face "
                                  "instead of a self-blend."),
    grade_p: float = typer.Option(0.0, help="Chance that each training crop, real or fake, gets a random global "
                                  "colour grade (0 in the committed recipe)."),
    blur_p: float = typer.Option(0.0, help="Chance that a training pair is cut from its photos blurred alike "
                                 "(sigma 0.5-1.5 px), in both stages (0 in the committed recipe)."),
    lowres_p: Optional[float] = typer.Option(None, help="Stage 2: share of training pairs cut from small (30-70 %), "
                                             "recompressed copies of their photos; the recipe's value if not given."),
    frozen_blocks: int = typer.Option(0, help="Keep the stem and this many leading blocks of the backbone at their "
                                      "starting weights: cheaper steps (0 trains every layer)."),
    stage3_steps: Optional[int] = typer.Option(None, help="Stage 3: length of a third cycle in which most pairs "
                                               "come through the video channel from world photos and real video "
                                               "frames; 0 stops after stage 2; 600 if not given."),
    init3: Path = typer.Option(None, help="Skip stages 1-2: run stage 3 from these weights."),
    shared: Path = typer.Option(SHARED_DIR, help="Folder with data/faces/world and data/video (stage 3)."),
    stop_early: bool = typer.Option(False, "--stop-early", help="The short recipe: stop each cycle early (11/15 "
                                    "of stage 1, half of stage 2: 4400 + 600 steps) and keep stage 2's last "
                                    "weights."),
):
    """Train the face-blend detector on forgeries made from real faces: the committed two-stage recipe by default
    (models/face_blend.md); each stage resumes from WORK if interrupted."""
    from .detectors.blendnet import BACKBONE_BLOCKS
    from .training.train import PRECISIONS, STAGE1_STEPS, STAGE2_LOWRES_P, STAGE3_STEPS, train_recipe

    if precision not in PRECISIONS:
        print(f"deepscreen: error: --precision {precision!r}: use one of {', '.join(PRECISIONS)}", file=sys.stderr)
        raise typer.Exit(2)
    for weights in (init, init3):
        if weights is not None and not weights.is_file():
            print(f"deepscreen: error: {weights}: no such weights file", file=sys.stderr)
            raise typer.Exit(2)
    stage3_steps = STAGE3_STEPS if stage3_steps is None else stage3_steps
    if stage3_steps and not (shared / "data/faces/world/manifest.csv").is_file():
        print(f"deepscreen: error: stage 3 needs {shared}/data/faces/world and data/video (--shared), or "
              "--stage3-steps 0", file=sys.stderr)
        raise typer.Exit(2)
    if init is not None and (stage2_steps == 0 or steps is not None):
        print("deepscreen: error: --init skips stage 1 (stage 2 runs from those weights): set its length with "
              "--stage2-steps (not 0), not --steps", file=sys.stderr)
        raise typer.Exit(2)
    lowres_p = STAGE2_LOWRES_P if lowres_p is None else lowres_p
    for flag, p in (("--donor-p", donor_p), ("--grade-p", grade_p), ("--lowres-p", lowres_p),
                    ("--blur-p", blur_p)):
        if not 0.0 <= p <= 1.0:
            print(f"deepscreen: error: {flag} {p}: must be between 0 and 1", file=sys.stderr)
            raise typer.Exit(2)
    if not 0 <= frozen_blocks <= BACKBONE_BLOCKS:
        print(f"deepscreen: error: --frozen-blocks {frozen_blocks}: the backbone has {BACKBONE_BLOCKS} blocks",
              file=sys.stderr)
        raise typer.Exit(2)
    work.mkdir(parents=True, exist_ok=True)
    log_file = open(work / "train.log", "a")

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_file.write(msg + "\n")
        log_file.flush()

    train_recipe(data, out, work, log=log, stage1_steps=STAGE1_STEPS if steps is None else steps,
                 stage2_steps=stage2_steps, donor_p=donor_p, lr_scale=lr_scale, init=init, seed=seed,
                 precision=precision, grade_p=grade_p, frozen_blocks=frozen_blocks, stop_early=stop_early,
                 lowres_p=lowres_p, blur_p=blur_p, stage3_steps=stage3_steps, shared=shared, init3=init3)


@app.command("train-voice")
def train_voice(
    out: Path = typer.Option(MODELS_DIR / "voice.safetensors", help="Where to write the weights."),
    work: Path = typer.Option(PROJECT_ROOT / ".cache/voice", help="Generated copies, checkpoints, reports."),
    steps: int = typer.Option(4000, help="Optimiser steps of 32 two-second windows (16 real + 16 synthetic)."),
    exclude: list[str] = typer.Option([], help="Leave this generator out of training (repeatable)."),
    add: list[str] = typer.Option([], help="Also train on this optional generator, e.g. world_hnm (repeatable)."),
    logo: bool = typer.Option(False, "--logo", help="Run every leave-one-generator-out model, print the table."),
    frontend: str = typer.Option("linear", help="Front end: linear (80 bands, shipped), linear_if (+ a phase "
                                 "channel), mel, spec (256 bins), or wave (learnt from the waveform)."),
    head: str = typer.Option("linear", help="Output head: linear (shipped) or oc (one-class softmax)."),
    augment: str = typer.Option("none", help="Training augmentation: none (shipped) or eq (random equaliser)."),
    eval_only: bool = typer.Option(False, "--eval-only", help="No training: print the test table of the OUT weights "
                                   "(with voice_wave/voice_phase.safetensors beside them, each model and all of "
                                   "them as the scanner combines them)."),
    ensemble: bool = typer.Option(False, "--ensemble", help="Train the models the scanner combines (filterbank and "
                                  "phase novelty) and report each and the combination (the shipped recipe)."),
    seed: int = typer.Option(0),
):
    """Train the voice detector on real LibriSpeech and its vocoder copies (resumes from WORK if interrupted)."""
    from .detectors.voice import PHASE_WEIGHTS, WAVE_WEIGHTS, WEIGHTS
    from .detectors.voicenet import FRONTENDS, HEADS
    from .synthesis.voice import GENERATORS, OPTIONAL, UNSEEN
    from .training.voice_data import build, build_channels
    from .training.voice_train import (AUGMENTS, ENSEMBLE, VoiceTrainConfig, assess, assess_runs, format_logo,
                                       format_report, train as run)

    unknown = set(exclude) - set(GENERATORS)
    if unknown:
        print(f"deepscreen: error: unknown generator(s) {', '.join(sorted(unknown))}; known: {', '.join(GENERATORS)}",
              file=sys.stderr)
        raise typer.Exit(2)
    if set(add) - set(OPTIONAL):
        print(f"deepscreen: error: --add {', '.join(sorted(set(add) - set(OPTIONAL)))}: not an optional generator; "
              f"known: {', '.join(OPTIONAL)}", file=sys.stderr)
        raise typer.Exit(2)
    if frontend not in FRONTENDS:
        print(f"deepscreen: error: unknown front end {frontend!r}; known: {', '.join(FRONTENDS)}", file=sys.stderr)
        raise typer.Exit(2)
    if head not in HEADS:
        print(f"deepscreen: error: unknown head {head!r}; known: {', '.join(HEADS)}", file=sys.stderr)
        raise typer.Exit(2)
    if augment not in AUGMENTS:
        print(f"deepscreen: error: unknown augmentation {augment!r}; known: {', '.join(AUGMENTS)}", file=sys.stderr)
        raise typer.Exit(2)

    def show_build(name: str, i: int, n: int) -> None:
        if i % 50 == 0 or i == n:
            print(f"making {name}: {i}/{n}", file=sys.stderr, flush=True)

    def show_step(step: int, total: int, loss: float) -> None:
        if step % 50 == 0 or step == total:
            print(f"step {step}/{total} loss {loss:.3f}", file=sys.stderr, flush=True)

    cache = work / "clips"
    if eval_only:
        if not out.is_file():
            print(f"deepscreen: error: {out}: no such weights file", file=sys.stderr)
            raise typer.Exit(2)
        extras = [out.with_name(n) for n in (WAVE_WEIGHTS, PHASE_WEIGHTS)] if out.name == WEIGHTS else []
        tables = assess([out, *[e for e in extras if e.is_file()]], cache)
        print("\n\n".join(format_report(t) for t in tables.values()), flush=True)
        return
    if ensemble and frontend != VoiceTrainConfig.frontend:
        print(f"deepscreen: error: --ensemble trains the front ends {' and '.join(ENSEMBLE)}; leave out --frontend",
              file=sys.stderr)
        raise typer.Exit(2)
    # once: vocoder copies and channel variants are cached in WORK
    data = build(cache, [*GENERATORS, *add, *UNSEEN], progress=show_build)
    for name, clips in data.items():
        build_channels(cache, name, clips, progress=show_build)
    runs = [[g] for g in GENERATORS] if logo else [exclude]
    reports: dict[str, list[dict]] = {}  # per model (front end, or all combined): one report per run
    extra = {"wave": WAVE_WEIGHTS, "phase": PHASE_WEIGHTS}  # where --ensemble writes the models beside OUT
    for held_out in runs:
        dirs = []
        for fe in ENSEMBLE if ensemble else (frontend,):
            name = "all" if not held_out else "without_" + "_".join(held_out)
            name += "" if fe == VoiceTrainConfig.frontend else f"_{fe}"
            name += "" if head == VoiceTrainConfig.head else f"_{head}"
            name += "" if augment == VoiceTrainConfig.augment else f"_{augment}"
            name += "".join(f"_plus_{g}" for g in add)
            cfg = VoiceTrainConfig(steps=steps, exclude=list(held_out), add=list(add), seed=seed, frontend=fe,
                                   head=head, augment=augment)
            # Only models trained on every generator are shipped; leave-one-out models are for the table.
            dest = None if held_out else (out.with_name(extra[fe]) if ensemble and fe in extra else out)
            report = run(cfg, cache, work / name, dest, progress=show_step, test=not ensemble)
            dirs.append(work / name)
            if not ensemble:
                reports.setdefault(fe, []).append(report)
                print(format_report(report), flush=True)
        if ensemble:  # each model and the combination from one pass over the test split
            for key, table in assess_runs(dirs, cache).items():
                reports.setdefault(key, []).append(table)
                print(format_report(table), flush=True)
    if logo:
        print("\n\n".join(format_logo(r) for r in reports.values()), flush=True)


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
        write_html(verdicts, report, thresholds=bands)
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
    from .training.evaluate import evaluate_folder, format_metrics

    scanner = _load_scanner(None)
    result = evaluate_folder(scanner, folder, limit=limit, scores_csv=scores, progress=sys.stderr.isatty())
    print(json.dumps(result, indent=2) if json_out else format_metrics(result))


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
    from .training.evaluate import METHODS, write_forgery_folder

    if method not in METHODS:
        print(f"deepscreen: error: --method {method!r}: use one of {', '.join(METHODS)}", file=sys.stderr)
        raise typer.Exit(2)
    try:
        n = write_forgery_folder(data, out, split, limit, seed, cache=PROJECT_ROOT / ".cache/train/lfw_landmarks.npz",
                                 method=method)
    except ValueError as err:
        print(f"deepscreen: error: {err}", file=sys.stderr)
        raise typer.Exit(2) from None
    kind = "self-blended" if method == "sbi" else "face-swapped"
    print(f"wrote {n} real and {n} {kind} images to {out}")


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
