"""Training-step speed of the face-blend detector on this machine, as a table of medians.

  .venv/bin/python benchmarks/bench_train_step.py [--steps 8] [--rounds 3]

One step of `deepscreen train` = making a batch (16 LFW faces and their self-blends, `training.train._batch`) plus
forward, backward and an AdamW update, in the arithmetic `deepscreen train` picks here: bfloat16 autocast where
the CPU has native bfloat16, float32 elsewhere (emulated bfloat16 is ~4x slower and is not timed). Timed three
ways, in alternating rounds so that a drift in the host's speed hits all alike (the ratios are measured in the
same run): every layer trained as `deepscreen train` does (channels-last layout and, in bfloat16, depthwise
convolutions in float32: `BlendNet.depthwise_in_float32`); the same in the default layout (and plain bfloat16:
how v1.3 was trained); and with the stem and first three blocks frozen (`--frozen-blocks 3`). Needs the landmark
cache of a training run (`.cache/train/lfw_landmarks.npz`; `deepscreen train` writes it in ~1.5 min).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepscreen.config import PROJECT_ROOT, SHARED_DIR
from deepscreen.detectors.blendnet import BlendNet, native_bfloat16
from deepscreen.training.data import load_faceset
from deepscreen.training.train import _batch

from _table import print_table, timed  # benchmarks/ is on sys.path when run as a script


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8, help="timed steps per configuration and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--landmarks", type=Path, default=PROJECT_ROOT / ".cache/train/lfw_landmarks.npz")
    args = ap.parse_args()
    torch.set_num_threads(2)
    faces = load_faceset(SHARED_DIR / "data/faces/lfw", args.landmarks).split("train")
    rng = np.random.default_rng(0)
    batches = [_batch(faces, rng, 16) for _ in range(args.steps)]
    bce = nn.BCEWithLogitsLoss()
    bf16 = native_bfloat16()  # the arithmetic `deepscreen train --precision auto` picks

    def learner(frozen: int, fast: bool = True):
        model = BlendNet(imagenet_init=True).freeze_early(frozen)
        if fast:  # as training.train.train builds it
            model = model.depthwise_in_float32().to(memory_format=torch.channels_last)
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        feed = iter(range(10**9))

        def step():
            x, y, maps = batches[next(feed) % len(batches)]
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                logit, map_logit = model(x)
            loss = bce(logit.float(), y) + bce(map_logit.float(), maps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        step()  # warm-up: first-call allocations
        return step

    plain_name = "all layers, plain bfloat16 (v1.3's run)" if bf16 else "all layers, default layout"
    configs = {"all layers trained (recipe)": learner(0), plain_name: learner(0, False),
               "stem + 3 blocks frozen": learner(3)}
    times: dict[str, list[float]] = {name: [] for name in configs}
    making: list[float] = []
    for _ in range(args.rounds):
        making += timed(lambda: _batch(faces, rng, 16), args.steps)
        for name, step in configs.items():
            times[name] += timed(step, args.steps)
    batch_s = statistics.median(making)
    rows = [("arithmetic (deepscreen train --precision auto)", "bfloat16" if bf16 else "float32", ""),
            ("making a batch of 16 pairs", f"{batch_s:.3f} s", "")]
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, s in medians.items():
        rows.append((f"network step, {name}", f"{s:.3f} s", ""))
        rows.append((f"whole step, {name}", f"{s + batch_s:.3f} s", ""))
    full, plain, frozen = (medians[n] + batch_s for n in configs)
    rows.append(("speed-up of the whole step: " + ("float32 depthwise + " if bf16 else "") + "channels-last",
                 f"{plain / full:.2f}x", ""))
    rows.append(("speed-up of the whole step from freezing", f"{full / frozen:.2f}x", ""))
    print_table(rows, value_width=8)


if __name__ == "__main__":
    main()
