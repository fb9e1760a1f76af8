"""Command line: `deepscreen scan | evaluate | train | synthesize`. Every command calls the library; none re-implements it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .config import MODELS_DIR, PROJECT_ROOT, SHARED_DIR

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Screen photos and videos for deepfakes: a calibrated probability, where, when and why.")


@app.callback()
def _group() -> None:
    """deepscreen: screen media for deepfakes."""


@app.command()
def train(
    data: Path = typer.Option(SHARED_DIR / "data/faces/lfw", help="Real faces, one folder per person."),
    out: Path = typer.Option(MODELS_DIR / "face_blend.safetensors", help="Where to write the weights."),
    work: Path = typer.Option(PROJECT_ROOT / ".cache/train", help="Checkpoints, logs, landmark cache."),
    steps: int = typer.Option(2800, help="Optimiser steps of 32 crops (16 real + 16 self-blended)."),
    seed: int = typer.Option(0),
):
    """Train the face-blend detector on self-blended images of real faces (resumes from WORK if interrupted)."""
    from .training.train import TrainConfig, train as run

    work.mkdir(parents=True, exist_ok=True)
    log_file = open(work / "train.log", "a")

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_file.write(msg + "\n")
        log_file.flush()

    run(TrainConfig(data=data, out=out, work=work, steps=steps, seed=seed), log=log)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
