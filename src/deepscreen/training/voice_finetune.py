"""Teach VoiceNet other people's TTS: fine-tune the shipped filterbank network on the dev systems of
`../shared/data/speech/dev`, and measure it leave-one-system-out by speaker fold.

    python -m deepscreen.training.voice_finetune build WORK          # features of every clip (CPU, minutes)
    python -m deepscreen.training.voice_finetune loso WORK [--device cuda]   # held-out table
    python -m deepscreen.training.voice_finetune ship WORK --out models/voice.safetensors

Why the features are stored, not the audio: every held-out number needs its own model (one per system and
speaker fold, ~60 of them), so the front end is computed once. A clip's log filterbank frames (VoiceNet's
"linear" front end before its per-window mean is removed) are kept as 8-bit codes 0.15 nats apart; a 2-s window
is 201 consecutive frames, its mean removed as `features` does. The quantisation error (±0.075 nats, ±0.33 dB) is
far below what any channel does to a recording.

Held-out protocol (the dev README's rule: no number for a system from a model that trained on it; splits by
speaker): for each system S and speaker fold k holding clips of S, a model is trained on every other system
and on real speech outside folds k and k+1, calibrated on fold k+1 (Platt, intercept moved to PRIOR) and
scores S's clips in fold k. Real clips of fold k are scored by a model trained on every system outside folds k
and k+1, calibrated likewise: the shipped model, trained on all systems, is that model.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import MODELS_DIR, SHARED_DIR
from ..detectors.voicenet import HOP, N_FFT, RATE, VoiceNet, _linear_filters, load_weights, save_weights
from . import metrics

FOLDS = 5  # speaker folds, as training/voice_whisper.fold_of deals them

DEV_DIR = SHARED_DIR / "data/speech/dev"
LIBRI_DIR = SHARED_DIR / "data/speech"
WINDOW_FRAMES = 201  # frames of a 2-s window (centred STFT: 1 + 32000 / 160)
CODE_STEP, CODE_FLOOR = 0.15, -22.0  # 8-bit codes of log energy: [-22, +16.25] nats
PRIOR = 0.1  # share of synthetic speech the calibration assumes (as voice v1.3)
OWN_MAX_S = 8.0  # seconds of each LibriSpeech utterance used (and of its own vocoder copy)


@dataclass(frozen=True)
class Recipe:
    steps: int = 400
    batch: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-4
    seed: int = 0


# ---------------------------------------------------------------- features


def log_frames(x: np.ndarray) -> np.ndarray:
    """(samples,) 16 kHz -> (frames, 80) log filterbank energies, as `voicenet.features` computes them."""
    t = torch.as_tensor(x, dtype=torch.float32)[None]
    spec = torch.stft(t, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs().pow(2)
    return torch.log(torch.einsum("fk,bkt->bft", _linear_filters(), spec) + 1e-8)[0].T.numpy()


def encode(frames: np.ndarray) -> np.ndarray:
    centred = frames - frames.mean()  # the per-window mean is removed later: only the shape matters
    return np.clip(np.round((centred - CODE_FLOOR) / CODE_STEP), 0, 255).astype(np.uint8)


def decode(codes: np.ndarray) -> np.ndarray:
    return codes.astype(np.float32) * CODE_STEP + CODE_FLOOR


def pad_to_window(codes: np.ndarray) -> np.ndarray:
    """A clip under 2 s: the scanner zero-pads its samples; near-silent frames (code 0) stand in."""
    return np.pad(codes, ((0, max(0, WINDOW_FRAMES - len(codes))), (0, 0)))


def window_features(codes: np.ndarray, starts: np.ndarray) -> torch.Tensor:
    """(frames, 80) codes of one clip, window start frames -> (N, 1, 80, 201) VoiceNet input."""
    codes = pad_to_window(codes)
    starts = np.minimum(np.asarray(starts), len(codes) - WINDOW_FRAMES)  # a window flush with the clip's end
    idx = starts[:, None] + np.arange(WINDOW_FRAMES)[None]
    w = decode(codes[idx]).transpose(0, 2, 1)
    w = w - w.mean(axis=(1, 2), keepdims=True)
    return torch.from_numpy(np.ascontiguousarray(w[:, None]))


def scanner_starts(x: np.ndarray, finder) -> np.ndarray:
    """Start frames of the windows the scanner scores (2 s over the speech silero-vad finds, 1 s apart)."""
    from ..detectors.voice import speech_windows

    spans = speech_windows(finder(x)[1], len(x)) or [(0, min(len(x), 2 * RATE))]
    return np.array([round(a / HOP) for a, _ in spans], np.int64)


def build(work: Path, log=print) -> Path:
    """Every dev clip as recorded and through one random channel, and LibriSpeech train-clean utterances with
    their Griffin-Lim and WORLD copies through random channels (the v1.2 training families, so the network does
    not forget them), as coded frames. One npz, resumable only as a whole (a few minutes)."""
    from ..media.audio import read_audio
    from ..media.speech import SpeechFinder
    from ..synthesis.voice import degrade, griffin_lim, world
    from .voice_whisper import fold_of, speaker_group

    path = work / "voice_frames.npz"
    if path.exists():
        return path
    work.mkdir(parents=True, exist_ok=True)
    finder = SpeechFinder()
    codes, rows = [], []

    def add(frames, **row):
        codes.append(encode(frames))
        rows.append(row | {"frames": len(frames)})

    with open(DEV_DIR / "manifest.csv", newline="") as f:
        dev = list(csv.DictReader(f))
    started = time.time()
    for i, r in enumerate(dev):
        x = read_audio(DEV_DIR / r["file"]).samples
        rng = np.random.default_rng(zlib.crc32(r["file"].encode()))
        fold = fold_of(speaker_group(r))
        base = {"label": r["label"], "system": r["system"], "fold": fold, "clip": r["file"]}
        add(log_frames(x), variant="clean", starts=scanner_starts(x, finder).tolist(), **base)
        add(log_frames(degrade(x, rng)), variant="channel", starts=[], **base)
        if i % 50 == 0:
            log(f"{time.time() - started:6.0f}s dev {i}/{len(dev)}")
    with open(LIBRI_DIR / "manifest.csv", newline="") as f:
        libri = [r for r in csv.DictReader(f) if r["subset"] == "train-clean-100"]
    for i, r in enumerate(libri):
        x = read_audio(LIBRI_DIR / r["path"]).samples[: int(OWN_MAX_S * RATE)]
        rng = np.random.default_rng(zlib.crc32(r["path"].encode()))
        fold = fold_of(f"libri:{r['speaker']}")
        for system, make in (("LibriSpeech", None), ("own-griffin-lim", griffin_lim), ("own-world", world)):
            y = x if make is None else make(x, rng)
            add(log_frames(degrade(y, rng)), label="real" if make is None else "fake", system=system,
                fold=fold, clip=r["path"], variant="channel", starts=[])
        if i % 50 == 0:
            log(f"{time.time() - started:6.0f}s LibriSpeech {i}/{len(libri)}")
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in codes])])
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, codes=np.concatenate(codes), offsets=offsets, rows=json.dumps(rows))
    tmp.replace(path)
    log(f"{path}: {len(rows)} clips, {offsets[-1]} frames, {path.stat().st_size / 1e6:.1f} MB")
    return path


# ---------------------------------------------------------------- training


class Frames:
    def __init__(self, path: Path):
        z = np.load(path)
        self.codes, self.offsets = z["codes"], z["offsets"]
        self.rows = json.loads(str(z["rows"]))
        self.label = np.array([r["label"] == "fake" for r in self.rows])
        self.system = np.array([r["system"] for r in self.rows])
        self.fold = np.array([r["fold"] for r in self.rows])
        self.variant = np.array([r["variant"] for r in self.rows])

    def clip(self, i: int) -> np.ndarray:
        return self.codes[self.offsets[i]:self.offsets[i + 1]]

    def dev_systems(self) -> list[str]:
        own = {"LibriSpeech", "own-griffin-lim", "own-world"}
        return sorted(set(self.system[self.label]) - own)


def _sampler(data: Frames, allowed: np.ndarray, rng: np.random.Generator):
    """Balanced batches: half real, half fake; within each, every source (corpus or system) equally often, so
    the 30 YourTTS clips do not outweigh the 6 StyleTTS ones."""
    groups = {}
    for i in np.flatnonzero(allowed):
        groups.setdefault((bool(data.label[i]), str(data.system[i])), []).append(i)
    by_label = {lab: [g for k, g in groups.items() if k[0] == lab] for lab in (False, True)}

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        windows, ys = [], []
        for lab in (False, True):
            for _ in range(n // 2):
                g = by_label[lab][rng.integers(len(by_label[lab]))]
                i = g[rng.integers(len(g))]
                codes = data.clip(i)
                start = rng.integers(max(1, len(codes) - WINDOW_FRAMES + 1))
                windows.append(pad_to_window(codes)[start:start + WINDOW_FRAMES])
                ys.append(float(lab))
        return window_features(np.concatenate(windows), np.arange(len(windows)) * WINDOW_FRAMES), torch.tensor(ys)

    return draw


def train_model(data: Frames, allowed: np.ndarray, recipe: Recipe, device: str = "cpu",
                init: Path = MODELS_DIR / "voice.safetensors") -> VoiceNet:
    """The shipped network fine-tuned on the allowed clips."""
    torch.manual_seed(recipe.seed)
    model, _ = load_weights(init)
    model = model.to(device).train()
    if recipe.steps == 0:  # the shipped network as it is: the baseline of the held-out table
        return model.eval()
    opt = torch.optim.AdamW(model.parameters(), recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=recipe.steps, pct_start=0.1)
    draw = _sampler(data, allowed, np.random.default_rng(recipe.seed))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(recipe.steps):
        x, y = draw(recipe.batch)
        loss = loss_fn(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def clip_logits(model: VoiceNet, data: Frames, clips: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Recording scores of as-recorded dev clips, as the voice detector forms them (mean of the most suspicious
    half of the scanner's windows)."""
    from ..detectors.voice import utterance_logit

    out = []
    with torch.inference_mode():
        for i in clips:
            z = model(window_features(data.clip(i), np.array(data.rows[i]["starts"])).to(device))
            out.append(utterance_logit(z.float().cpu().numpy()))
    return np.array(out)


def calibration(y: np.ndarray, z: np.ndarray, prior: float = PRIOR) -> tuple[float, float]:
    a, b = metrics.fit_platt(y, z)
    return a, b + np.log(prior / (1 - prior)) - np.log(y.mean() / (1 - y.mean()))


def fit_fold(data: Frames, k: int, held_system: str | None, recipe: Recipe, device: str,
             skip_test_fold: bool = True):
    """A model trained outside folds k and k+1 (and without `held_system`), calibrated on fold k+1. With
    `skip_test_fold` False it also trains on fold k (the shipped model: nothing is left to test on)."""
    cal_fold = (k + 1) % FOLDS
    keep_system = (data.system != held_system) if held_system else np.ones(len(data.rows), bool)
    train = ((data.fold != k) | (not skip_test_fold)) & (data.fold != cal_fold) & keep_system
    model = train_model(data, train, recipe, device)
    cal = np.flatnonzero((data.fold == cal_fold) & keep_system & (data.variant == "clean"))
    a, b = calibration(data.label[cal].astype(float), clip_logits(model, data, cal, device))
    return model, (a, b)


def leave_one_system_out(data: Frames, recipe: Recipe, device: str = "cpu", folds=range(FOLDS),
                         log=print) -> list[dict]:
    """One row per as-recorded dev clip of `folds`: its label, source and held-out calibrated log-odds (and, for
    every system's AUC, the fold's real clips as each held-out-system model sees them). Folds are independent:
    they can run in parallel processes and their rows be joined."""
    dev = np.flatnonzero(data.variant == "clean")
    out = []
    started = time.time()
    for k in folds:
        model, (a, b) = fit_fold(data, k, None, recipe, device)
        real = dev[(data.fold[dev] == k) & ~data.label[dev]]
        for i, z in zip(real, clip_logits(model, data, real, device)):
            out.append({"i": int(i), "system": str(data.system[i]), "fake": False, "z": float(a * z + b)})
        log(f"{time.time() - started:6.0f}s fold {k}: real scored by the all-systems model")
        for s in data.dev_systems():
            fakes = dev[(data.fold[dev] == k) & (data.system[dev] == s)]
            if not len(fakes):
                continue
            model, (a, b) = fit_fold(data, k, s, recipe, device)
            held_real = dev[(data.fold[dev] == k) & ~data.label[dev]]
            for i, z in zip(fakes, clip_logits(model, data, fakes, device)):
                out.append({"i": int(i), "system": s, "fake": True, "z": float(a * z + b)})
            # the same model's view of the fold's real clips, for this system's AUC
            for i, z in zip(held_real, clip_logits(model, data, held_real, device)):
                out.append({"i": int(i), "system": str(data.system[i]), "fake": False, "z": float(a * z + b),
                            "against": s})
        log(f"{time.time() - started:6.0f}s fold {k} done")
    return out


def table(rows: list[dict]) -> str:
    real = [r for r in rows if not r["fake"] and "against" not in r]
    zr = np.array([r["z"] for r in real])
    lines = [f"{'system':28} {'clips':>5} {'AUC':>6} {'caught':>7}"]
    all_fake = []
    for s in sorted({r["system"] for r in rows if r["fake"]}):
        zf = np.array([r["z"] for r in rows if r["fake"] and r["system"] == s])
        zs = np.array([r["z"] for r in rows if r.get("against") == s])
        all_fake.append(zf)
        auc = metrics.auc(np.r_[np.zeros(len(zs)), np.ones(len(zf))], np.r_[zs, zf])
        lines.append(f"{s:28} {len(zf):5d} {auc:6.3f} {np.mean(zf >= 0):7.1%}")
    zf = np.concatenate(all_fake)
    auc = metrics.auc(np.r_[np.zeros(len(zr)), np.ones(len(zf))], np.r_[zr, zf])
    lines.append(f"{'all (real: all-systems models)':28} {len(zf):5d} {auc:6.3f} {np.mean(zf >= 0):7.1%}")
    for c in sorted({r["system"] for r in real}):
        z = np.array([r["z"] for r in real if r["system"] == c])
        lines.append(f"real {c:23} {len(z):5d} flagged {np.mean(z >= 0):.1%}")
    lines.append(f"real, all {len(zr):5d} flagged {np.mean(zr >= 0):.1%}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("build", "loso", "ship", "report"))
    ap.add_argument("work", type=Path, help="the folder of voice_frames.npz (report: held-out rows, .json)",
                    nargs="+")
    ap.add_argument("--folds", type=int, nargs="*", default=list(range(FOLDS)))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=Recipe.steps)
    ap.add_argument("--lr", type=float, default=Recipe.lr)
    ap.add_argument("--out", type=Path, help="where to write the held-out rows (loso) or the network (ship)")
    args = ap.parse_args()
    recipe = Recipe(steps=args.steps, lr=args.lr)
    if args.action == "report":
        print(table([r for f in args.work for r in json.loads(Path(f).read_text())]))
        return
    work = args.work[0]
    if args.action == "build":
        build(work)
        return
    data = Frames(work / "voice_frames.npz")
    if args.action == "loso":
        rows = leave_one_system_out(data, recipe, args.device, args.folds)
        out = args.out or work / f"loso_{args.steps}_{args.lr:g}.json"
        out.write_text(json.dumps(rows))
        print(table(rows))
    else:  # trained on four speaker folds of every system, calibrated on the fifth
        model, platt = fit_fold(data, FOLDS - 1, None, recipe, args.device, skip_test_fold=False)
        meta = {"frontend": "linear", "width": 16, "platt": list(platt), "recipe": asdict(recipe),
                "trained_on": "v1.2 fine-tuned on dev systems (voice_finetune)"}
        save_weights(model.cpu(), args.out, meta)
        print(f"written {args.out}; calibration {platt}")


if __name__ == "__main__":
    main()
