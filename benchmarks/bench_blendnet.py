"""Inference speed of the face-blend CNN by arithmetic and batch size, as a table of medians.

  .venv/bin/python benchmarks/bench_blendnet.py [--repeats 5] [--rounds 4]

BlendNet on batches of 1-16 random 160x160 crops (the cost does not depend on the pixels), milliseconds per crop,
in float32 and, where the CPU multiplies it natively, in bfloat16 (elsewhere bfloat16 is emulated and many times
slower). Three builds of the same weights: onnxruntime (float32 only: how the scanner runs float32 since
2026-12-02, session 15, and its default on every CPU since 2026-12-03), torch as the scanner runs it in bfloat16
(`BlendNet.for_inference`: batch norms folded, stride-1 padding done by the convolutions, ReLU6 in place,
channels-last), and the torch baseline with batch norms folded and channels-last only (how v1.3 shipped until
2026-12-02). Configurations alternate within each round, so a drift in this shared machine's speed hits all
alike. The scanner's batch for each arithmetic (`FaceBlendDetector.precision` sets `batch_size`) is marked; a
photo's one face is a batch of 2 (the face and its mirror image).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from deepscreen.config import MODELS_DIR
from deepscreen.detectors.blendnet import OnnxBlendNet, load_weights, native_bfloat16, preprocess
from deepscreen.detectors.face_blend import WEIGHTS, FaceBlendDetector

from _table import print_table, timed  # benchmarks/ is on sys.path when run as a script

BATCHES = (1, 2, 4, 8, 16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per configuration and round")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(2)
    det = FaceBlendDetector()
    baseline = load_weights(MODELS_DIR / WEIGHTS)[0].fold_batch_norms().to(memory_format=torch.channels_last)
    builds = {"onnxruntime": OnnxBlendNet(det.model, 2), "inference build": det.model, "baseline": baseline}
    native = native_bfloat16()
    precisions = ["float32"] + (["bfloat16"] if native else [])
    crops = np.random.default_rng(0).integers(0, 256, (max(BATCHES), 160, 160, 3), dtype=np.uint8)
    inputs = {n: preprocess(crops[:n]) for n in BATCHES}
    with torch.inference_mode():
        outs = [m(inputs[8]) for m in builds.values()]
    gaps = {b: max(float((x - y).abs().max()) for x, y in zip(out, outs[-1])) for b, out in zip(builds, outs)}
    configs = [(p, build, n) for p in precisions for build in builds for n in BATCHES
               if not (p == "bfloat16" and build == "onnxruntime")]

    def call(p: str, build: str, n: int):
        model, x = builds[build], inputs[n]

        def run():
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=p == "bfloat16"):
                model(x)
        run()  # warm-up: first calls pick kernels and allocate
        return run

    per_crop: dict[tuple, list[float]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for c in configs:
            per_crop[c] += [s / c[2] for s in timed(call(*c), args.repeats)]

    med = {c: statistics.median(v) * 1000 for c, v in per_crop.items()}
    rows = []
    for p in precisions:
        det.precision = p  # what the scanner picks for this arithmetic
        used = "onnxruntime" if det.runtime == "onnxruntime" else "inference build"
        for n in BATCHES:
            use = {det.batch_size: "scanner: video batches", 2: "scanner: a photo's face + mirror"}.get(n, "")
            for b in builds:
                if (p, b, n) in med:
                    rows.append((f"{p}, batch {n:2d}: ms per crop, {b}", f"{med[(p, b, n)]:.1f}", use * (b == used)))
        for n in (2, det.batch_size):
            rows.append((f"{p}, batch {n:2d}: speed-up of the scanner's build ({used}) over the baseline",
                         f"{med[(p, 'baseline', n)] / med[(p, used, n)]:.2f}x", ""))
    if not native:
        rows.append(("bfloat16: not native on this CPU (emulated), not timed", "-", ""))
    for b in list(builds)[:2]:
        rows.append((f"largest output difference, {b} vs baseline", f"{gaps[b]:.1e}", ""))
    print_table(rows, value_width=8)


if __name__ == "__main__":
    main()
