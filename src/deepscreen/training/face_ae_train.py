"""Train the face painter (`synthesis.face_ae`) on the training split's real faces: world photos, real video
frames and LFW people, as stage 3 draws them. Resumable (WORK/checkpoint.pt); writes float32 safetensors.

    python -m deepscreen.training.face_ae_train --work WORK/painter [--steps 2000]

Loss: L1 plus L1 on the Laplacian (so the decoder rebuilds some edges rather than only a blur, as a swap model
trained for days would), on the whole box.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import SHARED_DIR
from ..synthesis.face_ae import BOX_HALF, SIZE, FaceAE, box_tensor, face_box
from .world_data import stage3_sources

PAINTER_STEPS = 2000  # what the recipe trains (~17 min on 2 cores)
_LAPLACE = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float32).view(1, 1, 3, 3).repeat(3, 1, 1, 1)


def training_boxes(work: Path, per_set: int, seed: int, lfw_cache: Path, log=print) -> torch.Tensor:
    """(N, 3, SIZE, SIZE) face boxes of the training split (cached in WORK/boxes.pt)."""
    cache = work / "boxes.pt"
    if cache.exists():
        return torch.load(cache)
    lfw_root = SHARED_DIR / "data/faces/lfw"
    sets, _ = stage3_sources(SHARED_DIR, lfw_root, lfw_cache, work.parent / "world", "train")
    rng = np.random.default_rng(seed)
    out = []
    for faces in sets:
        picks = rng.choice(len(faces), size=min(per_set, len(faces)), replace=False)
        for n, i in enumerate(picks):
            rgb = faces.image(int(i))
            out.append(box_tensor(rgb, face_box(rgb.shape, faces.landmarks[i], float(rng.uniform(*BOX_HALF)))))
        log(f"boxes: {len(out)}")
    boxes = (torch.stack(out) * 255).round().to(torch.uint8)
    torch.save(boxes, cache)
    return boxes


def loss_fn(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    edges = F.l1_loss(F.conv2d(out, _LAPLACE, padding=1, groups=3), F.conv2d(x, _LAPLACE, padding=1, groups=3))
    return F.l1_loss(out, x) + edges


def train(work: Path, steps: int, batch: int = 16, lr: float = 5e-4, width: int = 16, per_set: int = 2500,
          seed: int = 0, threads: int = 2, lfw_cache: Path | None = None, log=print) -> Path:
    """Train (or finish training) the painter in WORK; returns WORK/face_ae.safetensors. World photos and video
    frames come from WORK/../world (as stage 3 caches them), LFW landmarks from `lfw_cache`."""
    from safetensors.torch import save_file

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out = work / "face_ae.safetensors"
    if out.exists():
        return out
    work.mkdir(parents=True, exist_ok=True)
    boxes = training_boxes(work, per_set, seed, lfw_cache or work.parent / "lfw_landmarks.npz", log)
    model = FaceAE(width=width)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    step, ck = 0, work / "checkpoint.pt"
    if ck.exists():
        state = torch.load(ck, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        log(f"resumed at step {step}")
    rng = np.random.default_rng([seed, step])
    started, running = time.time(), []
    while step < steps:
        idx = torch.from_numpy(rng.integers(len(boxes), size=batch))
        x = boxes[idx].float() / 255.0
        if rng.random() < 0.5:
            x = x.flip(3)
        for g in opt.param_groups:  # cosine to a tenth
            g["lr"] = lr * (0.55 + 0.45 * np.cos(np.pi * step / steps))
        loss = loss_fn(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        running.append(loss.item())
        if step % 100 == 0 or step == steps:
            log(f"step {step}/{steps} loss {np.mean(running):.4f} ({(time.time() - started) / 60:.1f} min)")
            running = []
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, ck)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out),
              metadata={"model": "face_ae", "steps": str(steps), "size": str(SIZE)})
    log(f"wrote {out}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=PAINTER_STEPS)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    train(args.work, args.steps, threads=args.threads, log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    main()
