"""Voice detector on Whisper encoder frames (lab side): a small trained back end on the frame sequence of frozen
Whisper tiny.en layers, measured by the same held-out protocol as the filterbank network (voice_finetune.py).

    python -m deepscreen.training.voice_finetune build WORK --whisper [--candidates]   # both front ends' frames
    python -m deepscreen.training.voice_whisper_seq loso WORK --layer 2 --groups 3      # held-out table
    python -m deepscreen.training.voice_whisper_seq fuse A.json B.json                   # mean of two runs' log-odds
    python -m deepscreen.training.voice_whisper_seq stack A.json B.json --build WORK     # fused, cross-fitted
    python -m deepscreen.training.voice_whisper_seq stack A.json B.json --build WORK --windows  # ... per window

Why: a pooled linear probe on Whisper's last layer learnt corpora as much as synthesis (a third of real speech
flagged, models/voice_history.md). Kawa et al. (Interspeech 2023) put a trained network on the encoder's frame
sequence instead; detectors on pretrained speech encoders also find middle layers as telling as the top one, so
the build keeps several layers and the back end is run on each.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .voice_finetune import (FOLDS, Frames, Learner, Recipe, balanced_clips, held_out_groups, leave_one_system_out,
                             tables)

WHISPER_FILE = "whisper_frames.npz"
LAYERS = (1, 2, 4)  # of tiny.en's 4 blocks (4: the encoder's output, after its final layer norm)
WINDOW = 100  # encoder frames of a 2-s window (50 per second)
CHUNK = 30 * 16_000  # Whisper's context


class WhisperLayers:
    """`layers(samples)` -> (len(LAYERS), frames, 384) float16: the chosen blocks' outputs over a clip (encoded in
    30-s chunks, each with its own log-mel normalisation, as Whisper does)."""

    def __init__(self, layers: tuple[int, ...] = LAYERS):
        from ..detectors.whisper_encoder import torch_encoder

        self.layers = layers
        self.encoder = torch_encoder()

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        from ..detectors.whisper_encoder import log_mel

        parts = []
        for start in range(0, max(len(samples), 1), CHUNK):
            chunk = samples[start:start + CHUNK]
            if len(chunk) < 640:
                break
            mel = log_mel(chunk)
            mel = mel[:, : mel.shape[1] - mel.shape[1] % 2]
            with torch.inference_mode():
                outs = self.encoder(torch.from_numpy(mel)[None])
            parts.append(torch.stack([outs[k][0] for k in self.layers]).numpy().astype(np.float16))
        if not parts:
            return np.zeros((len(self.layers), 1, 384), np.float16)
        return np.concatenate(parts, axis=1)


def save_sequences(path: Path, sequences: list[np.ndarray], layers: tuple[int, ...]) -> None:
    offsets = np.concatenate([[0], np.cumsum([s.shape[1] for s in sequences])])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, frames=np.concatenate(sequences, axis=1), offsets=offsets, layers=np.array(layers))
    tmp.replace(path)


class Sequences(Frames):
    """The filterbank build's clips and rows, with one Whisper layer's frames as each clip's features."""

    def __init__(self, work: Path, layer: int):
        super().__init__(work / "voice_frames.npz")
        z = np.load(work / WHISPER_FILE)
        layers = list(z["layers"])
        if layer not in layers:
            raise SystemExit(f"--layer {layer}: the build kept layers {layers}")
        self.seq = z["frames"][layers.index(layer)]
        self.seq_offsets = z["offsets"]
        if len(self.seq_offsets) != len(self.rows) + 1:
            raise SystemExit(f"{work}: the two builds hold different clips; build again")

    def sequence(self, i: int) -> np.ndarray:
        s = self.seq[self.seq_offsets[i]:self.seq_offsets[i + 1]]
        return s if len(s) >= WINDOW else np.resize(s, (WINDOW, s.shape[1]))  # short clips repeat themselves


class SeqHead(nn.Module):
    """(B, T, 384) encoder frames -> (B,) logits: a projection, two temporal convolutions and attentive mean and
    standard deviation pooling (a speaker-verification style head, small enough to train many times on a CPU)."""

    def __init__(self, dim: int = 384, width: int = 96):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, width)
        self.convs = nn.Sequential(nn.Conv1d(width, width, 5, padding=2), nn.GELU(),
                                   nn.Conv1d(width, width, 5, padding=2), nn.GELU())
        self.attend = nn.Conv1d(width, 1, 1)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.gelu(self.proj(self.norm(x))).transpose(1, 2)
        h = h + self.convs(h)
        a = torch.softmax(self.attend(h), dim=2)
        mean = (h * a).sum(2)
        std = ((h - mean[..., None]) ** 2 * a).sum(2).clamp_min(1e-6).sqrt()
        return self.out(self.drop(torch.cat([mean, std], 1)))[:, 0]


def _windows(data: Sequences, i: int, starts: np.ndarray) -> np.ndarray:
    s = data.sequence(i)
    starts = np.minimum(np.asarray(starts), len(s) - WINDOW)
    return s[starts[:, None] + np.arange(WINDOW)[None]]


def train_head(data: Sequences, allowed: np.ndarray, recipe: Recipe, device: str = "cpu", init=None) -> SeqHead:
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    model = SeqHead().to(device).train()
    pick = balanced_clips(data, allowed, rng)  # half real, half fake, every source equally often
    opt = torch.optim.AdamW(model.parameters(), recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=recipe.steps, pct_start=0.1)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(recipe.steps):
        xs, ys = [], []
        for lab in (False, True):
            for _ in range(recipe.batch // 2):
                i = pick(lab)
                n = len(data.sequence(i))
                xs.append(_windows(data, i, np.array([rng.integers(max(1, n - WINDOW + 1))]))[0])
                ys.append(float(lab))
        x = torch.from_numpy(np.stack(xs).astype(np.float32)).to(device)
        loss = loss_fn(model(x), torch.tensor(ys, device=device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def head_logits(model: SeqHead, data: Sequences, clips: np.ndarray, device: str = "cpu") -> list[np.ndarray]:
    """Raw logits of the scanner's windows (their 100-per-second starts halved) of each as-recorded clip."""
    out = []
    with torch.inference_mode():
        for i in clips:
            w = _windows(data, i, np.array(data.rows[i]["starts"]) // 2)
            out.append(model(torch.from_numpy(w.astype(np.float32)).to(device)).cpu().numpy().astype(np.float64))
    return out


WHISPER_HEAD = Learner(train=train_head, logits=head_logits)


def fuse(files: list[Path]) -> list[dict]:
    """Rows of two held-out runs over the same build, joined clip by clip: the mean of their calibrated log-odds
    (each run's rows scored by models that held out the same systems and folds)."""
    runs = [json.loads(Path(f).read_text()) for f in files]

    def keyed(rows):
        return {(r["i"], r["system"], r.get("against"), r["fake"]): r for r in rows}

    first, *rest = [keyed(r) for r in runs]
    out = []
    for k, r in first.items():
        others = [o.get(k) for o in rest]
        if any(o is None for o in others):
            raise SystemExit(f"{files}: the runs do not hold the same clips (held-out groups and folds must match)")
        out.append(r | {key: float(np.mean([r[key]] + [o[key] for o in others])) for key in ("z", "zp")})
    return out


def logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """Weights (with the intercept last) of a logistic regression by Newton's method, a small ridge for stability."""
    x = np.c_[x, np.ones(len(x))]
    w = np.zeros(x.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-x @ w))
        grad = x.T @ (p - y) + l2 * np.r_[w[:-1], 0]
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    return w


@dataclass(frozen=True)
class Stack:
    """A fusion of several detectors' calibrated log-odds: `weights` of each (and an intercept) by a logistic
    regression of the recordings' scores; with `platt` it fuses each window instead and the pooled windows
    (`utterance_logit`, as the scanner pools) go through this calibration, its intercept at the prior."""

    weights: tuple[float, ...]
    platt: tuple[float, float] | None = None

    def __call__(self, x: np.ndarray, windows: list[list[np.ndarray]] | None = None) -> np.ndarray:
        w = np.asarray(self.weights)
        if self.platt is None:
            return x @ w[:-1] + w[-1]
        from ..fusion import utterance_logit

        a, b = self.platt
        return np.array([a * utterance_logit(sum(wj * np.asarray(zj) for wj, zj in zip(w, clip)) + w[-1]) + b
                         for clip in windows])


def fit_stack(x: np.ndarray, y: np.ndarray, windows: list[list[np.ndarray]] | None = None,
              prior: float = 0.1) -> Stack:
    """Recordings' log-odds of each detector `x` (n, detectors), labels `y` and, to fuse windows, each recording's
    window log-odds per detector: the fusion, its intercept moved from the rows' share of fakes to `prior`."""
    w = logistic(x, y)
    shift = np.log(prior / (1 - prior)) - np.log(y.mean() / (1 - y.mean()))
    if windows is None:
        w[-1] += shift
        return Stack(tuple(map(float, w)))
    pooled = Stack(tuple(map(float, w)), (1.0, 0.0))(x, windows)
    a, b = logistic(pooled[:, None], y)
    return Stack(tuple(map(float, w)), (float(a), float(b + shift)))


def stack(files: list[Path], folds: np.ndarray, groups: list[tuple[str, ...]], prior: float = 0.1,
          windows: bool = False) -> list[dict]:
    """Two or more held-out runs' rows fused by `fit_stack`, cross-fitted so that it stays held out: a row of fold
    k (scored by models that held out the set of systems G) is fused by a stack fitted on the other folds' rows
    without G's clips. Only the fusion is learnt from other speakers' held-out scores; nothing of fold k or of G
    reaches it. With `windows` each window is fused (the rows' `wz`, `wzp`), as the scanner would."""
    runs = [{(r["i"], r["system"], r.get("against"), r["fake"]): r for r in json.loads(Path(f).read_text())}
            for f in files]
    keys = list(runs[0])
    if any(set(run) != set(keys) for run in runs[1:]):
        raise SystemExit(f"{files}: the runs do not hold the same clips (held-out groups and folds must match)")
    out = [{f: v for f, v in runs[0][k].items() if f not in ("wz", "wzp")} for k in keys]
    y = np.array([float(k[3]) for k in keys])
    fold = np.array([folds[k[0]] for k in keys])
    system = np.array([k[1] for k in keys])
    plain = np.array([k[2] is None for k in keys])  # each clip once: real rows of the all-systems model
    for key_name in ("z", "zp"):
        x = np.array([[run[k][key_name] for run in runs] for k in keys])
        win = [[run[k]["w" + key_name] for run in runs] for k in keys] if windows else None
        cache = {}
        for n, k in enumerate(keys):
            held = next((g for g in groups if (k[2] or (k[1] if k[3] else None)) in g), ())
            if (fold[n], held) not in cache:
                use = np.flatnonzero((fold != fold[n]) & plain & ~np.isin(system, list(held)))
                cache[(fold[n], held)] = fit_stack(x[use], y[use], [win[u] for u in use] if windows else None,
                                                   prior)
            out[n][key_name] = float(cache[(fold[n], held)](x[n:n + 1], [win[n]] if windows else None)[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("loso", "fuse", "stack"))
    ap.add_argument("work", type=Path, nargs="+", help="loso: the build folder; fuse: held-out rows (.json)")
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--folds", type=int, nargs="*", default=list(range(FOLDS)))
    ap.add_argument("--groups", type=int, default=3)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=Recipe.seed,
                    help="training seed (runs of several seeds tell a gain from noise)")
    ap.add_argument("--without", nargs="*", default=[], metavar="SYSTEM")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--windows", action="store_true", help="stack: fuse each window, as the scanner would")
    ap.add_argument("--build", type=Path, default=Path(".cache/vft"), help="stack: the build the runs scored")
    args = ap.parse_args()
    if args.action == "fuse":
        print(tables(fuse(args.work)))
        return
    if args.action == "stack":  # the build folder is read for the clips' folds: pass --build
        data = Frames(args.build / "voice_frames.npz")
        print(tables(stack(args.work, data.fold, held_out_groups(data.dev_systems(), args.groups),
                           windows=args.windows)))
        return
    work = args.work[0]
    data = Sequences(work, args.layer).without(args.without)
    recipe = Recipe(steps=args.steps, lr=args.lr, seed=args.seed)
    rows = leave_one_system_out(data, recipe, folds=args.folds, groups=args.groups, learner=WHISPER_HEAD)
    without = "".join(f"_no-{w}" for w in args.without)
    out = args.out or work / f"seq_l{args.layer}_{args.steps}_{args.lr:g}_g{args.groups}{without}_" \
                             f"f{''.join(map(str, args.folds))}.json"
    out.write_text(json.dumps(rows))
    print(tables(rows))


if __name__ == "__main__":
    main()
