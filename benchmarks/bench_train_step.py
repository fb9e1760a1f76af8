"""Training-step speed of the face-blend detector on this machine, as a table of medians.

  .venv/bin/python benchmarks/bench_train_step.py [--steps 8] [--rounds 3]

One step of `deepscreen train` = making a batch (16 LFW faces and their self-blends, `training.train._batch`) plus
forward, backward and an AdamW update, in the arithmetic `deepscreen train` picks here: bfloat16 autocast where
the CPU has native bfloat16, float32 elsewhere (emulated bfloat16 is ~4x slower and is not timed). Timed four
ways: every layer trained as `deepscreen train` does (channels-last layout, lean padding: `BlendNet.lean_padding`,
and in bfloat16 depthwise convolutions in float32: `BlendNet.depthwise_in_float32`); the same without lean padding
(the recipe before 2026-12-03); in the default layout (and plain bfloat16: how v1.3 was trained); and with the
stem and first three blocks frozen (`--frozen-blocks 3`). Each of those under glibc's default malloc settings and
with freed memory kept for reuse (`training.allocator.keep_freed_memory`, what `deepscreen train` does). A
malloc setting holds for a whole process, so each round runs one child process per setting, alternating, so that a
drift in the host's speed hits all alike (the ratios are measured in the same run). Needs the landmark cache of a
training run (`.cache/train/lfw_landmarks.npz`; `deepscreen train` writes it in ~1.5 min).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from deepscreen.config import PROJECT_ROOT

from _table import print_table, timed  # benchmarks/ is on sys.path when run as a script

CONFIGS = ("all layers trained (recipe)", "without lean padding", "default layout", "stem + 3 blocks frozen")
ALLOCATORS = ("glibc defaults", "freed memory kept")


def child(args) -> None:
    """One round under one malloc setting: {config: step seconds, "batch": batch-making seconds} as JSON."""
    import numpy as np
    import torch
    from torch import nn

    from deepscreen.config import SHARED_DIR
    from deepscreen.detectors.blendnet import BlendNet, native_bfloat16
    from deepscreen.training.allocator import keep_freed_memory
    from deepscreen.training.data import load_faceset
    from deepscreen.training.train import _batch

    if args.child == ALLOCATORS[1] and not keep_freed_memory():
        raise SystemExit("this C library has no mallopt settings to keep freed memory")
    torch.set_num_threads(2)
    faces = load_faceset(SHARED_DIR / "data/faces/lfw", args.landmarks).split("train")
    rng = np.random.default_rng(0)
    batches = [_batch(faces, rng, 16) for _ in range(args.steps)]
    bce = nn.BCEWithLogitsLoss()
    bf16 = native_bfloat16()  # the arithmetic `deepscreen train --precision auto` picks

    def learner(name: str):
        model = BlendNet(imagenet_init=True).freeze_early(3 if "frozen" in name else 0)
        if name != "default layout":  # as training.train.train builds it
            model = model.depthwise_in_float32().to(memory_format=torch.channels_last)
            if name != "without lean padding":
                model = model.lean_padding()
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

    steps = {name: learner(name) for name in CONFIGS}
    out = {"batch": timed(lambda: _batch(faces, rng, 16), args.steps), "bfloat16": bf16}
    for name in CONFIGS:
        out[name] = []
    for _ in range(args.steps):  # configurations interleaved step by step
        for name, step in steps.items():
            out[name] += timed(step, 1)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8, help="timed steps per configuration and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--landmarks", type=Path, default=PROJECT_ROOT / ".cache/train/lfw_landmarks.npz")
    ap.add_argument("--child", choices=ALLOCATORS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    times = {(a, c): [] for a in ALLOCATORS for c in CONFIGS + ("batch",)}
    bf16 = False
    for _ in range(args.rounds):
        for alloc in ALLOCATORS:
            run = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--landmarks",
                                  str(args.landmarks), "--child", alloc], capture_output=True, text=True)
            if run.returncode:
                raise SystemExit(run.stderr.strip().splitlines()[-1])
            got = json.loads(run.stdout.strip().splitlines()[-1])
            bf16 = got.pop("bfloat16")
            for name, t in got.items():
                times[(alloc, name)] += t
    med = {key: statistics.median(t) for key, t in times.items()}
    rows = [("arithmetic (deepscreen train --precision auto)", "bfloat16" if bf16 else "float32", "")]
    for alloc in ALLOCATORS:
        batch_s = med[(alloc, "batch")]
        rows.append((f"[{alloc}] making a batch of 16 pairs", f"{batch_s:.3f} s", ""))
        for name in CONFIGS:
            rows.append((f"[{alloc}] whole step, {name}", f"{med[(alloc, name)] + batch_s:.3f} s", ""))

    def whole(alloc, name):
        return med[(alloc, name)] + med[(alloc, "batch")]
    new, old = ALLOCATORS[1], ALLOCATORS[0]
    rows += [
        ("speed-up of the recipe's step from keeping freed memory",
         f"{whole(old, CONFIGS[0]) / whole(new, CONFIGS[0]):.2f}x", ""),
        ("speed-up from lean padding (freed memory kept)", f"{whole(new, CONFIGS[1]) / whole(new, CONFIGS[0]):.2f}x", ""),
        ("speed-up over the recipe before 2026-12-03 (no lean padding, glibc defaults)",
         f"{whole(old, CONFIGS[1]) / whole(new, CONFIGS[0]):.2f}x", ""),
        ("speed-up of the whole step: " + ("float32 depthwise + " if bf16 else "") + "channels-last",
         f"{whole(new, CONFIGS[2]) / whole(new, CONFIGS[0]):.2f}x", ""),
        ("speed-up of the whole step from freezing", f"{whole(new, CONFIGS[0]) / whole(new, CONFIGS[3]):.2f}x", ""),
    ]
    print_table(rows, value_width=8)


if __name__ == "__main__":
    main()
