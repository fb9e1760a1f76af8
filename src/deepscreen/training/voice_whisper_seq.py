"""Voice detector on Whisper encoder frames (lab side): a small trained back end on the frame sequence of frozen
Whisper layers (tiny.en's or base's), measured by the same held-out protocol as the filterbank network
(voice_finetune.py). Voice v1.6's recipe (models/voice.md):

    python -m deepscreen.training.voice_finetune build WORK --whisper tiny.en base     # both front ends' frames
    python -m deepscreen.training.voice_finetune loso WORK --init V13 --steps 300 --groups 3 --seed S --out FBs.json
    python -m deepscreen.training.voice_whisper_seq loso WORK --model base --layer 2 --seed S --out WHs.json
    python -m deepscreen.training.voice_whisper_seq fuse WH0.json WH1.json --out WH.json  # two seeds' heads' mean
    python -m deepscreen.training.voice_whisper_seq stack FB.json WH.json --build WORK   # fused, cross-fitted
    python -m deepscreen.training.voice_whisper_seq stack FB.json WH.json --build WORK --windows --floor  # as shipped
    python -m deepscreen.training.voice_whisper_seq ship WORK --model base --heads 2 --pairs FB1.json WH.json
        FB2.json WH.json --out models/voice_whisper.safetensors   # one line: what the scanner loads

(V13: v1.3's filterbank network, `git show 8ac62ef:models/voice.safetensors`; seeds 1 and 2 of it, 0 and 1 of the
Whisper heads made v1.6.)

Why: a pooled linear probe on Whisper's last layer learnt corpora as much as synthesis (a third of real speech
flagged, models/voice_history.md). Kawa et al. (Interspeech 2023) put a trained network on the encoder's frame
sequence instead; detectors on pretrained speech encoders also find middle layers as telling as the top one, so
the build keeps several layers and the back end is run on each.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..detectors.voice_whisper import WINDOW, SeqHead, SeqHeads, encode_recording, window_frames
from .voice_finetune import (FOLDS, Frames, Learner, Recipe, balanced_clips, held_out_groups, leave_one_system_out,
                             tables)

WHISPER_FILE = "whisper_frames.npz"  # tiny.en's; another encoder's: whisper_frames_<model>.npz
# The blocks kept: of tiny.en's 4 (4: the encoder's output, after its final layer norm) and of base's 6 (the middle
# ones: tiny.en's middle blocks held the synthesis traces, its output did not).
LAYERS = {"tiny.en": (1, 2, 4), "base": (2, 3, 4)}


def whisper_file(model: str = "tiny.en") -> str:
    return WHISPER_FILE if model == "tiny.en" else f"whisper_frames_{model}.npz"


class WhisperLayers:
    """`layers(samples)` -> (len(layers), frames, width) float16: the chosen blocks' outputs over a clip, encoded as
    the scanner's Whisper branch encodes it (detectors/voice_whisper.py)."""

    def __init__(self, model: str = "tiny.en", layers: tuple[int, ...] | None = None):
        from ..detectors.whisper_encoder import torch_encoder

        self.model, self.layers = model, layers or LAYERS[model]
        self.encoder = torch_encoder(blocks=max(self.layers), model=model)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        return encode_recording(self.encoder, samples, self.layers)


def save_sequences(path: Path, sequences: list[np.ndarray], layers: tuple[int, ...]) -> None:
    offsets = np.concatenate([[0], np.cumsum([s.shape[1] for s in sequences])])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, frames=np.concatenate(sequences, axis=1), offsets=offsets, layers=np.array(layers))
    tmp.replace(path)


class Sequences(Frames):
    """The filterbank build's clips and rows, with one Whisper layer's frames as each clip's features."""

    def __init__(self, work: Path, layer: int, model: str = "tiny.en"):
        super().__init__(work / "voice_frames.npz")
        z = np.load(work / whisper_file(model))
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


def _windows(data: Sequences, i: int, starts: np.ndarray) -> np.ndarray:
    return window_frames(data.sequence(i), starts)


def train_head(data: Sequences, allowed: np.ndarray, recipe: Recipe, device: str = "cpu", init=None) -> SeqHead:
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    model = SeqHead(dim=data.seq.shape[-1]).to(device).train()
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


def head_logits(model: nn.Module, data: Sequences, clips: np.ndarray, device: str = "cpu") -> list[np.ndarray]:
    """Raw logits of the scanner's windows (their 100-per-second starts halved) of each as-recorded clip."""
    out = []
    with torch.inference_mode():
        for i in clips:
            w = _windows(data, i, np.array(data.rows[i]["starts"]) // 2)
            out.append(model(torch.from_numpy(w.astype(np.float32)).to(device)).cpu().numpy().astype(np.float64))
    return out


WHISPER_HEAD = Learner(train=train_head, logits=head_logits)


def whisper_heads(n: int = 1) -> Learner:
    """The back end as `n` heads trained alike from seeds seed, seed + 1, ..., scoring as their mean logit."""
    if n == 1:
        return WHISPER_HEAD

    def train(data: Sequences, allowed: np.ndarray, recipe: Recipe, device: str = "cpu", init=None) -> SeqHeads:
        model = SeqHeads(n, dim=data.seq.shape[-1])
        model.heads = nn.ModuleList(train_head(data, allowed, replace(recipe, seed=recipe.seed + j), device)
                                    for j in range(n))
        return model.to(device).eval()

    return Learner(train=train, logits=head_logits)


def fuse(files: list[Path]) -> list[dict]:
    """Rows of two held-out runs over the same build, joined clip by clip: the mean of their calibrated log-odds,
    per recording and per window (each run's rows scored by models that held out the same systems and folds)."""
    runs = [json.loads(Path(f).read_text()) for f in files]

    def keyed(rows):
        return {(r["i"], r["system"], r.get("against"), r["fake"]): r for r in rows}

    first, *rest = [keyed(r) for r in runs]
    out = []
    for k, r in first.items():
        others = [o.get(k) for o in rest]
        if any(o is None for o in others):
            raise SystemExit(f"{files}: the runs do not hold the same clips (held-out groups and folds must match)")
        out.append(r | {key: float(np.mean([r[key]] + [o[key] for o in others])) for key in ("z", "zp")}
                   | {key: np.mean([r[key]] + [o[key] for o in others], axis=0).tolist()  # the same windows
                      for key in ("wz", "wzp") if key in r})
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
    regression of the recordings' scores; with `platt` it fuses each window instead, the fused windows go through
    this calibration (its intercept at the prior) and are pooled (`utterance_logit`, as the scanner pools). With
    `floor`, a window's score is never under the first detector's own: the fusion can only add catches to it
    (a fake the first detector is sure of, and the others not, stays caught)."""

    weights: tuple[float, ...]
    platt: tuple[float, float] | None = None
    floor: bool = False

    def __call__(self, x: np.ndarray, windows: list[list[np.ndarray]] | None = None) -> np.ndarray:
        w = np.asarray(self.weights)
        if self.platt is None:
            return x @ w[:-1] + w[-1]
        from ..fusion import utterance_logit

        a, b = self.platt
        out = []
        for clip in windows:
            z = a * (sum(wj * np.asarray(zj) for wj, zj in zip(w, clip)) + w[-1]) + b
            out.append(utterance_logit(np.maximum(z, clip[0]) if self.floor else z))
        return np.array(out)


def fit_stack(x: np.ndarray, y: np.ndarray, windows: list[list[np.ndarray]] | None = None,
              prior: float = 0.1, floor: bool = False) -> Stack:
    """Recordings' log-odds of each detector `x` (n, detectors), labels `y` and, to fuse windows, each recording's
    window log-odds per detector: the fusion, its intercept moved from the rows' share of fakes to `prior`. The
    `floor` (windows only) is a rule, not fitted: the calibration is fitted on the fused windows without it."""
    w = logistic(x, y)
    shift = np.log(prior / (1 - prior)) - np.log(y.mean() / (1 - y.mean()))
    if windows is None:
        w[-1] += shift
        return Stack(tuple(map(float, w)))
    pooled = Stack(tuple(map(float, w)), (1.0, 0.0))(x, windows)
    a, b = logistic(pooled[:, None], y)
    return Stack(tuple(map(float, w)), (float(a), float(b + shift)), floor)


def stack(files: list[Path], folds: np.ndarray, groups: list[tuple[str, ...]], prior: float = 0.1,
          windows: bool = False, floor: bool = False) -> list[dict]:
    """Two or more held-out runs' rows fused by `fit_stack`, cross-fitted so that it stays held out: a row of fold
    k (scored by models that held out the set of systems G) is fused by a stack fitted on the other folds' rows
    without G's clips. Only the fusion is learnt from other speakers' held-out scores; nothing of fold k or of G
    reaches it. With `windows` each window is fused (the rows' `wz`, `wzp`), as the scanner would; with `floor` too,
    never under the first run's window (`Stack.floor`)."""
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
                                                   prior, floor)
            out[n][key_name] = float(cache[(fold[n], held)](x[n:n + 1], [win[n]] if windows else None)[0])
    return out


def pooled_stack(pairs: list[tuple[Path, Path]], prior: float = 0.1, floor: bool = True) -> tuple[Stack, int]:
    """The shipped fusion: `fit_stack` on the held-out rows (each clip once, with the phase branch, per window) of
    pairs of runs, the filterbank's first and the Whisper back end's second, every pair's rows pooled. Held-out
    scores, not the shipped models' own: the weights must say how far to trust each side on systems it never saw.
    With `floor`, the shipped rule: a window is never under the filterbank side's own score."""
    x, y, win = [], [], []
    for main_file, whisper_file in pairs:
        runs = [{(r["i"], r["system"], r["fake"]): r for r in json.loads(Path(f).read_text()) if "against" not in r}
                for f in (main_file, whisper_file)]
        if set(runs[0]) != set(runs[1]):
            raise SystemExit(f"{main_file}, {whisper_file}: the runs do not hold the same clips")
        for k in runs[0]:
            x.append([run[k]["zp"] for run in runs])
            win.append([run[k]["wzp"] for run in runs])
            y.append(float(k[2]))
    return fit_stack(np.array(x), np.array(y), win, prior, floor), len(y)


def ship(work: Path, pairs: list[tuple[Path, Path]], recipe: Recipe, out: Path, version: str, layer: int = 2,
         without: tuple[str, ...] = (), model: str = "tiny.en", heads: int = 1) -> dict:
    """The Whisper branch as the scanner loads it: the head(s) trained on four speaker folds of every system (the
    shipped filterbank network's folds), its calibrations fitted on the fifth, and the stack of `pooled_stack`."""
    from ..detectors.voicenet import save_weights
    from .voice_finetune import fit_fold

    data = Sequences(work, layer, model).without(list(without))
    head, scorers = fit_fold(data, FOLDS - 1, (), recipe, "cpu", skip_test_fold=False, learner=whisper_heads(heads))
    scorer = scorers[True]
    fused, rows = pooled_stack(pairs)
    meta = {"name": "voice_whisper", "version": version, "frontend": "whisper", "encoder": model, "layer": layer,
            "platt": list(scorer.window), "recording_platt": list(scorer.recording),
            "recording_platt_fit": "Platt scaling on speaker fold 0 of ../shared/data/speech/dev (never trained "
                                   "on), intercept moved to a prior of 0.1 synthetic; the phase branch kept where "
                                   "higher",
            "stack": {"weights": list(fused.weights), "platt": list(fused.platt), "floor": fused.floor,
                      "fit": f"logistic fusion of the filterbank (with phase) and Whisper branches' recording "
                             f"log-odds, then windows fused, calibrated at a prior of 0.1, kept above the "
                             f"filterbank's own (floor) and pooled: fitted on {rows} held-out rows of {len(pairs)} "
                             f"pair(s) of leave-systems-out runs (voice_whisper_seq ship)"},
            "recipe": {"steps": recipe.steps, "lr": recipe.lr, "batch": recipe.batch, "seed": recipe.seed,
                       "heads": heads},
            "trained_on": f"Whisper {model} block-{layer} frames of the dev systems' speaker folds 1-4, "
                          f"LibriSpeech train-clean-100 and own forgeries (voice_whisper_seq ship)"}
    save_weights(head.cpu(), out, meta)
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("loso", "fuse", "stack", "ship"))
    ap.add_argument("work", type=Path, nargs="+", help="loso: the build folder; fuse: held-out rows (.json)")
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--model", default="tiny.en", choices=sorted(LAYERS),
                    help="loso, ship: the Whisper encoder whose frames are read")
    ap.add_argument("--folds", type=int, nargs="*", default=list(range(FOLDS)))
    ap.add_argument("--groups", type=int, default=3)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=Recipe.seed,
                    help="training seed (runs of several seeds tell a gain from noise)")
    ap.add_argument("--without", nargs="*", default=[], metavar="SYSTEM")
    ap.add_argument("--heads", type=int, default=1,
                    help="loso, ship: heads trained from seeds seed, seed + 1, ..., scoring as their mean")
    ap.add_argument("--out", type=Path, help="loso: the held-out rows; fuse, stack: the fused rows; ship: the weights")
    ap.add_argument("--windows", action="store_true", help="stack: fuse each window, as the scanner would")
    ap.add_argument("--floor", action="store_true",
                    help="stack --windows: never under the first run's window score (as the shipped branch)")
    ap.add_argument("--build", type=Path, default=Path(".cache/vft"), help="stack: the build the runs scored")
    ap.add_argument("--pairs", type=Path, nargs="*", default=[], metavar="RUN",
                    help="ship: held-out runs to fit the stack on, filterbank then Whisper, pair after pair")
    ap.add_argument("--version", default="1.6", help="ship: the branch's version")
    args = ap.parse_args()
    if args.action == "fuse":
        rows = fuse(args.work)
        if args.out:  # a run of its own, to stack with others
            args.out.write_text(json.dumps(rows))
        print(tables(rows))
        return
    if args.action == "stack":  # the build folder is read for the clips' folds: pass --build
        data = Frames(args.build / "voice_frames.npz")
        rows = stack(args.work, data.fold, held_out_groups(data.dev_systems(), args.groups), windows=args.windows,
                     floor=args.floor)
        if args.out:  # the fused rows, for tables of other operating points
            args.out.write_text(json.dumps(rows))
        print(tables(rows))
        return
    work = args.work[0]
    recipe = Recipe(steps=args.steps, lr=args.lr, seed=args.seed)
    if args.action == "ship":
        if not args.pairs or len(args.pairs) % 2 or not args.out:
            raise SystemExit("ship: pass --out and --pairs FILTERBANK.json WHISPER.json [...] (pairs of held-out runs)")
        meta = ship(work, list(zip(args.pairs[::2], args.pairs[1::2])), recipe, args.out, args.version, args.layer,
                    tuple(args.without), args.model, args.heads)
        print(f"written {args.out}: {json.dumps({k: meta[k] for k in ('platt', 'recording_platt', 'stack')})}")
        return
    data = Sequences(work, args.layer, args.model).without(args.without)
    rows = leave_one_system_out(data, recipe, folds=args.folds, groups=args.groups, learner=whisper_heads(args.heads))
    without = "".join(f"_no-{w}" for w in args.without)
    model = ("" if args.model == "tiny.en" else f"{args.model}_") + ("" if args.heads == 1 else f"h{args.heads}_")
    out = args.out or work / f"seq_{model}l{args.layer}_{args.steps}_{args.lr:g}_g{args.groups}{without}_" \
                             f"f{''.join(map(str, args.folds))}.json"
    out.write_text(json.dumps(rows))
    print(tables(rows))


if __name__ == "__main__":
    main()
