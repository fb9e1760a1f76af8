"""Fit the generated-image patch CNN on packed training patches. Needs only numpy and torch, so it also runs on a
machine with nothing else installed (a GPU box):

    python src/deepscreen/training/generated_fit.py .cache/generated/gpu/train.npz OUT_DIR [--device cuda]

Writes OUT_DIR/<run>.pt (state dict + settings) for each run: the shipped recipe, its ablations, and the recipe
without each generator family (for the held-out-family table); with `--average-from E`, also OUT_DIR/<run>_avg.pt,
the mean of the weights of epochs E to the last (SWA). Calibration and every evaluation happen afterwards
in generated_train.py, on pictures this never sees.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import zlib
from pathlib import Path

import numpy as np
import torch

try:
    from ..detectors.generated_net import PatchCNN
except ImportError:  # run as a file, without the package (and its dependencies) installed
    _spec = importlib.util.spec_from_file_location(
        "generated_net", Path(__file__).resolve().parents[1] / "detectors" / "generated_net.py")
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    PatchCNN = _mod.PatchCNN

FAMILIES = ("realesrgan", "realsr", "dcgan", "autoencoder")  # index + 1 = family code; 0 = real
RUNS = {  # name: (family left out, width, spectrum)
    "main": (None, 16, True),
    "no_spectrum": (None, 16, False),
    "wide": (None, 24, True),
    **{f"without_{f}": (f, 16, True) for f in FAMILIES},
}


def pack(patches: np.ndarray) -> np.ndarray:
    """uint8 patches -> zlib of their horizontal differences (mod 256): ~0.3 of the raw size."""
    d = np.diff(patches, axis=2, prepend=np.zeros(patches.shape[:2] + (1,), np.uint8))
    return np.frombuffer(zlib.compress(d.tobytes(), 6), np.uint8)


def unpack(blob: np.ndarray, shape) -> np.ndarray:
    d = np.frombuffer(zlib.decompress(blob.tobytes()), np.uint8).reshape(shape)
    return np.cumsum(d, axis=2, dtype=np.uint64).astype(np.uint8)  # wraps mod 256 like the differences


class WeightAverage:
    """The running mean of a model's weights at the end of epochs (stochastic weight averaging, Izmailov et al.,
    UAI 2018: the average of points along the descent sits in a wider optimum than any one of them, and
    generalises further). Batch-norm statistics are not averaged but measured afresh under the averaged weights
    (`model`), as SWA prescribes."""

    def __init__(self):
        self.sum, self.count, self.epochs = None, 0, []

    def add(self, model: PatchCNN, epoch: int) -> None:
        params = {k: v.detach().double().clone() for k, v in model.named_parameters()}
        if self.sum is None:
            self.sum = params
        else:
            for k, v in params.items():
                self.sum[k] += v
        self.count += 1
        self.epochs.append(epoch + 1)

    def model(self, like: PatchCNN, x: torch.Tensor, batch: int = 256, batches: int = 100) -> PatchCNN:
        avg = PatchCNN(like.width, like.spectrum).to(x.device)
        avg.load_state_dict(like.state_dict())
        with torch.no_grad():
            for k, p in avg.named_parameters():
                p.copy_((self.sum[k] / self.count).to(p.dtype))
            for m in avg.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
                    m.momentum = None  # a plain mean over the batches below
            avg.train()
            g = torch.Generator(device="cpu").manual_seed(1)
            order = torch.randperm(len(x), generator=g)[: batch * batches].to(x.device)
            for i in range(0, len(order), batch):
                avg(x[order[i:i + batch]])
        return avg.eval()


def fit(patches: np.ndarray, labels: np.ndarray, family: np.ndarray, width: int, spectrum: bool, epochs: int,
        device: str, seed: int = 0, batch: int = 256, log=print, checkpoint=None, average_from: int = 0,
        averaged=None) -> PatchCNN:
    """Class-balanced, and within the fakes family-balanced (each family present weighs the same), AdamW + cosine,
    random horizontal flips. With `average_from` (an epoch, from 1), the weights at the end of that epoch and every
    later one are averaged too, and `averaged(model, epochs)` is called with the average after each epoch."""
    torch.manual_seed(seed)
    model = PatchCNN(width, spectrum).to(device)
    x = torch.from_numpy(patches).to(device)
    y = torch.from_numpy(labels.astype(np.float32)).to(device)
    w = np.zeros(len(labels), np.float32)
    w[labels == 0] = 0.5 / max(1, (labels == 0).sum())
    fams = [f for f in np.unique(family[labels == 1])]
    for f in fams:
        sel = (labels == 1) & (family == f)
        w[sel] = 0.5 / len(fams) / sel.sum()
    w = torch.from_numpy(w * len(w)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    steps = epochs * ((len(y) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.1)
    g = torch.Generator(device="cpu").manual_seed(seed)
    average = WeightAverage() if average_from else None
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(y), generator=g).to(device)
        total = 0.0
        for i in range(0, len(perm), batch):
            b = perm[i:i + batch]
            xb = x[b]
            flip = torch.rand(len(b), device=device) < 0.5
            xb = torch.where(flip[:, None, None], xb.flip(2), xb)
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(model(xb), y[b], reduction="none")
                    * w[b]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        log(f"  epoch {ep} loss {total / len(y):.4f} ({time.time() - t0:.0f} s)")
        if checkpoint:
            checkpoint(model, ep)
        if average and ep + 1 >= average_from:
            average.add(model, ep)
            if averaged:
                averaged(average.model(model, x), list(average.epochs))
    return model.eval()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, default=0, help="override the runs' width (0: as in RUNS)")
    ap.add_argument("--average-from", type=int, default=0, metavar="EPOCH",
                    help="also write <run>_avg.pt: the mean of the weights at the end of this epoch (from 1) and "
                         "every later one, batch-norm statistics measured afresh (0: not)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    z = np.load(args.data)
    patches = unpack(z["blob"], tuple(z["shape"]))
    labels, family = z["label"], z["family"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(labels)} patches ({int(labels.sum())} fake) on {args.device}", flush=True)
    for name in args.runs.split(","):
        left_out, width, spectrum = RUNS[name]
        width = args.width or width
        keep = family != (FAMILIES.index(left_out) + 1 if left_out else -1)
        t0 = time.time()

        def save(model, ep, name=name, width=width, spectrum=spectrum, left_out=left_out, averaged=()):
            torch.save({"state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                        "width": width, "spectrum": spectrum, "left_out": left_out, "epochs": ep + 1,
                        "averaged_epochs": list(averaged)},
                       out / f"{name}{'_avg' if averaged else ''}.pt")

        fit(patches[keep], labels[keep], family[keep], width, spectrum, args.epochs, args.device,
            log=lambda m: print(m, flush=True), checkpoint=save, average_from=args.average_from,
            averaged=lambda model, epochs, save=save: save(model, epochs[-1] - 1, averaged=epochs))
        print(f"{name}: {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
