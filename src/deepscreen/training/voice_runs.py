"""`deepscreen train-voice`: the runs of the voice recipe the command asks for, their tables printed.

  deepscreen train-voice                       # all generators -> models/voice.safetensors (+ report)
  deepscreen train-voice --exclude hifigan     # one leave-one-generator-out run
  deepscreen train-voice --logo                # every leave-one-out run, then the table for the model card
  deepscreen train-voice --ensemble            # the models the scanner combines, each and combined
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from ..detectors.voice import PHASE_WEIGHTS, WAVE_WEIGHTS, WEIGHTS
from ..detectors.voicenet import FRONTENDS, HEADS
from ..synthesis.voice import GENERATORS, OPTIONAL, UNSEEN
from .recipe import VOICE, FlagError, VoiceRecipe
from .voice_config import VoiceTrainConfig
from .voice_data import build, build_channels
from .voice_eval import assess, assess_runs
from .voice_report import format_logo, format_report
from .voice_train import AUGMENTS, train

RECIPE_FLAGS = ("steps", "frontend", "head", "augment", "seed")  # flags that change a value of the voice recipe
_EXTRA_WEIGHTS = {"wave": WAVE_WEIGHTS, "phase": PHASE_WEIGHTS}  # where --ensemble writes models beside OUT


def _check(recipe: VoiceRecipe, exclude: list[str], add: list[str], ensemble: bool) -> None:
    unknown = set(exclude) - set(GENERATORS)
    if unknown:
        raise FlagError(f"unknown generator(s) {', '.join(sorted(unknown))}; known: {', '.join(GENERATORS)}")
    if set(add) - set(OPTIONAL):
        raise FlagError(f"--add {', '.join(sorted(set(add) - set(OPTIONAL)))}: not an optional generator; "
                        f"known: {', '.join(OPTIONAL)}")
    for value, known, what in ((recipe.frontend, FRONTENDS, "front end"), (recipe.head, HEADS, "head"),
                               (recipe.augment, AUGMENTS, "augmentation")):
        if value not in known:
            raise FlagError(f"unknown {what} {value!r}; known: {', '.join(known)}")
    if ensemble and recipe.frontend != VOICE.frontend:
        raise FlagError(f"--ensemble trains the front ends {' and '.join(recipe.ensemble)}; leave out --frontend")


def _show_build(name: str, i: int, n: int) -> None:
    if i % 50 == 0 or i == n:
        print(f"making {name}: {i}/{n}", file=sys.stderr, flush=True)


def _show_step(step: int, total: int, loss: float) -> None:
    if step % 50 == 0 or step == total:
        print(f"step {step}/{total} loss {loss:.3f}", file=sys.stderr, flush=True)


def _run_name(held_out: list[str], cfg: VoiceTrainConfig) -> str:
    """The run's folder in WORK: what it holds out, and each setting that is not the recipe's."""
    name = "all" if not held_out else "without_" + "_".join(held_out)
    name += "" if cfg.frontend == VOICE.frontend else f"_{cfg.frontend}"
    name += "" if cfg.head == VOICE.head else f"_{cfg.head}"
    name += "" if cfg.augment == VOICE.augment else f"_{cfg.augment}"
    return name + "".join(f"_plus_{g}" for g in cfg.add)


def evaluate_weights(out: Path, cache: Path) -> None:
    """`--eval-only`: the test table of OUT (and of the models beside it the scanner combines with it)."""
    if not out.is_file():
        raise FlagError(f"{out}: no such weights file")
    extras = [out.with_name(n) for n in (WAVE_WEIGHTS, PHASE_WEIGHTS)] if out.name == WEIGHTS else []
    tables = assess([out, *[e for e in extras if e.is_file()]], cache)
    print("\n\n".join(format_report(t) for t in tables.values()), flush=True)


def train_voice(flags: dict, out: Path, work: Path, exclude: list[str], add: list[str], logo: bool = False,
                ensemble: bool = False, eval_only: bool = False) -> dict[str, list[dict]]:
    """The runs `deepscreen train-voice` asks for; `flags`: the recipe values the command line changed (names in
    RECIPE_FLAGS). Prints each run's table (and the leave-one-out table); returns the tables per model. Raises
    FlagError, before any work, for what cannot run."""
    recipe = replace(VOICE, **flags)
    _check(recipe, exclude, add, ensemble)
    cache = work / "clips"
    if eval_only:
        evaluate_weights(out, cache)
        return {}
    # Once for every run: vocoder copies and channel variants are made into WORK where missing, then kept loaded.
    data = build(cache, [*GENERATORS, *add, *UNSEEN], progress=_show_build)
    channels = {name: build_channels(cache, name, clips, progress=_show_build) for name, clips in data.items()}
    reports: dict[str, list[dict]] = {}  # per model (front end, or all combined): one report per run
    for held_out in [[g] for g in GENERATORS] if logo else [exclude]:
        dirs = []
        for frontend in recipe.ensemble if ensemble else (recipe.frontend,):
            cfg = VoiceTrainConfig.of(recipe, frontend=frontend, exclude=list(held_out), add=list(add))
            # Only models trained on every generator are shipped; leave-one-out models are for the table.
            dest = None if held_out else (out.with_name(_EXTRA_WEIGHTS[frontend]) if ensemble and
                                          frontend in _EXTRA_WEIGHTS else out)
            run_dir = work / _run_name(held_out, cfg)
            report = train(cfg, cache, run_dir, dest, progress=_show_step, test=not ensemble, data=data,
                           channels=channels)
            dirs.append(run_dir)
            if not ensemble:
                reports.setdefault(frontend, []).append(report)
                print(format_report(report), flush=True)
        if ensemble:  # each model and the combination from one pass over the test split
            for key, table in assess_runs(dirs, cache, data).items():
                reports.setdefault(key, []).append(table)
                print(format_report(table), flush=True)
    if logo:
        print("\n\n".join(format_logo(r) for r in reports.values()), flush=True)
    return reports
