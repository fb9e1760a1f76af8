"""The voice side: generators and channels (synthesis), the committed voice detector, and voice in the scan core."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from deepscreen.config import SHARED_DIR
from deepscreen.detectors.voice import speech_windows, utterance_logit
from deepscreen.media.audio import read_audio
from deepscreen.media.speech import SpeechSegment
from deepscreen.synthesis import voice as synth
from deepscreen.training.voice_data import manifest, split_of

from conftest import needs_data
from media_factory import level_frames, sine, write_audio, write_video

SPEECH_DIR = SHARED_DIR / "data/speech"


def _held_out_utterances(n: int) -> list:
    """Real speech of speakers the voice model never trained on (the test split), first `n` by path."""
    needs_data(SPEECH_DIR / "manifest.csv")
    rows = [r for r in manifest(SPEECH_DIR) if split_of(r["speaker"]) == "test" and float(r["duration_s"]) >= 5]
    return [read_audio(SPEECH_DIR / r["path"]).samples[: 16000 * 5] for r in rows[:n]]


@pytest.fixture(scope="module")
def held_out() -> list[np.ndarray]:
    return _held_out_utterances(8)


@pytest.fixture(scope="module")
def scanner():
    from deepscreen import Scanner

    return Scanner()


# ---------------------------------------------------------------- generator side


def _log_mel(x: np.ndarray) -> np.ndarray:
    """40-band log mel spectrogram: what says whether two signals carry the same words."""
    return np.log(synth.mel_filters(16000, 512, 40) @ synth._stft_mag(x, 512, 128).abs().numpy() + 1e-5)


@pytest.mark.parametrize("name", ["griffin_lim", "phase_vocoder", "world", "world_vc", "world_hnm", "lpc", "hifigan",
                                  "hifigan_v1"])
def test_generators_make_a_different_signal_of_the_same_speech(held_out, name):
    x = held_out[0][: 16000 * 3]
    y = synth.resynthesize(name, x, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert abs(np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(x**2)) - 1) < 0.05  # same loudness
    assert np.abs(y - x).mean() > 0.1 * np.abs(x).mean()  # a new waveform, not a copy
    assert np.corrcoef(_log_mel(x).ravel(), _log_mel(y).ravel())[0, 1] > 0.7  # ...saying the same thing


@pytest.mark.parametrize("name", ["piper", "kokoro"])
def test_tts_speaks_new_sentences_as_long_as_the_utterance(held_out, name):
    """The text-to-speech families: speech (silero-vad hears it), the utterance's length and loudness, other words
    (not a copy: its spectrogram does not follow the utterance's)."""
    from deepscreen.media.speech import SpeechFinder

    x = held_out[1][: 16000 * 4]
    y = synth.resynthesize(name, x, np.random.default_rng(3))
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert abs(np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(x**2)) - 1) < 0.05
    finder = SpeechFinder()
    speech_s = sum(s.duration_s for s in finder.segments(finder.probabilities(y)))
    assert speech_s > 2.0  # mostly speech, like the real utterance
    assert np.corrcoef(_log_mel(x).ravel(), _log_mel(y).ravel())[0, 1] < 0.7  # other words, unlike the vocoder copies
    assert all(len(s.split()) >= 6 and s[-1] in ".!?" for s in synth.tts_sentences())


def test_kokoro_reads_english_in_its_own_phoneme_set():
    """espeak's diphthongs and affricates become Kokoro's single letters, and every symbol left (stress and length
    marks included) is in Kokoro's vocabulary."""
    phonemes = synth.kokoro_phonemes("I know how they joined the choir.")
    assert {"I", "O", "W", "A", "ʤ"} <= set(phonemes) and "aɪ" not in phonemes and "dʒ" not in phonemes
    _, vocab, styles = synth._kokoro()
    assert all(c in vocab for c in phonemes) and all(s.shape[1] == 256 for s in styles)


def test_hnm_has_harmonics_below_the_maximum_voiced_frequency_and_noise_above():
    """On a perfectly periodic 150 Hz "voice", WORLD keeps the harmonics at 5.5-7.5 kHz; the harmonic-plus-noise
    copy (maximum voiced frequency 2-5 kHz) replaces them by noise there and keeps them at 0.3-1.5 kHz."""
    from scipy.signal import sawtooth

    x = (0.3 * sawtooth(2 * np.pi * 150 * np.arange(32000) / 16000)).astype(np.float32)

    def harmonicity(y: np.ndarray, lo: float, hi: float) -> float:  # energy on the harmonics / between them
        spec = np.abs(np.fft.rfft(y[4000:-4000] * np.hanning(24000))) ** 2
        hz = np.fft.rfftfreq(24000, 1 / 16000)
        k = np.arange(int(lo / 150) + 1, int(hi / 150))
        on = np.mean([spec[np.abs(hz - 150 * n) < 20].max() for n in k])
        off = np.mean([spec[np.abs(hz - 150 * (n + 0.5)) < 20].max() for n in k])
        return on / off

    world = synth.resynthesize("world", x, np.random.default_rng(0))
    hnm = synth.resynthesize("world_hnm", x, np.random.default_rng(0))
    assert harmonicity(world, 5500, 7500) > 30 and harmonicity(hnm, 5500, 7500) < 3
    assert harmonicity(hnm, 300, 1500) > 30


@pytest.mark.parametrize("n_fft", [512, 2048])
def test_phase_vocoder_shifts_pitch_and_keeps_duration(n_fft):
    import pyworld as pw
    from scipy.signal import sawtooth

    x = (0.3 * sawtooth(2 * np.pi * 150 * np.arange(32000) / 16000)).astype(np.float32)  # a 150 Hz "voice"
    for seed in range(4):
        draw = np.random.default_rng(seed)
        factor = 2 ** (draw.uniform(2, 5) * draw.choice([-1, 1]) / 12)  # the draw phase_vocoder makes
        y = synth.phase_vocoder(x, np.random.default_rng(seed), n_fft=n_fft).astype(np.float64)
        assert len(y) == len(x)
        f0, t = pw.dio(y, 16000)
        f0 = pw.stonemask(y, f0, t, 16000)
        assert abs(np.median(f0[f0 > 0]) / (150 * factor) - 1) < 0.02


@pytest.mark.parametrize("codec", sorted(synth.CODECS))
def test_codec_roundtrip_is_aligned_and_lossy(held_out, codec):
    x = held_out[1][: 16000 * 3]
    y = synth.codec_roundtrip(x, codec)
    assert y.shape == x.shape
    corr = np.corrcoef(x, y)[0, 1]
    assert 0.8 < corr < 0.99999, corr  # aligned (priming delay removed) yet not identical


def test_degrade_keeps_length_and_range(held_out):
    rng = np.random.default_rng(1)
    for _ in range(10):
        y = synth.degrade(held_out[2][:32000], rng)
        assert y.shape == (32000,) and np.abs(y).max() <= 1.0 and np.isfinite(y).all()


def test_speech_windows_cover_segments():
    segs = [SpeechSegment(0.5, 1.2), SpeechSegment(3.0, 7.5)]
    spans = speech_windows(segs, 16000 * 10)
    assert all(b - a == 32000 for a, b in spans)
    assert spans[0][0] <= 8000 and spans[0][1] >= 19200  # the short segment sits inside one window
    long = [(a, b) for a, b in spans if a >= 48000 - 1]
    assert long[0][0] == 48000 and long[-1][1] == 120000  # first flush with the start, last with the end
    assert utterance_logit(np.array([3.0, 1.0, -1.0, -3.0])) == 2.0  # mean of the top half


# ---------------------------------------------------------------- the committed detector


def test_committed_voice_model_separates_held_out_speakers(scanner, held_out):
    """Held-out speakers and their WORLD, Griffin-Lim and LPC copies: the committed weights must rank every
    synthetic copy above most real utterances (a small version of the model card's table)."""
    det, finder = scanner.voice_detector, scanner.speech
    real, fake = [], []
    rng = np.random.default_rng(3)
    for k, x in enumerate(held_out):
        real.append(det.analyse(x, finder(x)[1]).probability)
        y = synth.resynthesize(["world", "griffin_lim", "lpc"][k % 3], x, rng)
        fake.append(det.analyse(y, finder(y)[1]).probability)
    assert None not in real + fake
    auc = np.mean([f > r for f in fake for r in real])
    assert auc >= 0.9, (real, fake)
    assert np.mean(np.array(real) >= 0.5) <= 0.25, real


# ---------------------------------------------------------------- through the scan core


def test_scan_audio_file(scanner, tmp_path, held_out):
    path = write_audio(tmp_path / "speech.mp3", np.concatenate([np.zeros(24000, np.float32), held_out[3]]), "mp3")
    v = scanner.scan(path)
    assert v.kind == "audio" and v.error is None
    assert v.voice is not None and v.voice.probability is not None and v.probability == v.voice.probability
    assert v.voice.speech_s > 3 and v.voice.segments and v.voice.segments[0].start_s >= 1.3
    assert [p.time_s for p in v.voice.timeline] == [float(t) for t in range(len(v.voice.timeline))]
    assert v.voice.timeline[0].probability is None  # the first 1.5 s are silence
    assert [e.detector for e in v.evidence] == ["voice"]
    assert [m.name for m in v.models] == ["voice", "voice_phase", "voice_whisper"]
    d = v.to_dict()
    assert d["voice"]["timeline"] and d["voice"]["segments"]


def test_music_and_silence_are_out_of_scope(scanner, tmp_path):
    tones = np.concatenate([sine(3.0, hz=f) for f in (262, 330, 392)])
    v = scanner.scan(write_audio(tmp_path / "tune.flac", tones, "flac"))
    assert v.label == "inconclusive" and v.probability is None
    assert v.voice.probability is None and "out of scope" in v.voice.explanation
    assert v.evidence[0].score is None


def test_video_gets_face_and_voice_and_the_cross_check(scanner, tmp_path, held_out, face_video):
    """A real face with a Griffin-Lim voice laid over it: the dub case the cross-check is for."""
    from deepscreen.media import iter_frames, probe

    frames = [f.rgb for f in iter_frames(face_video, probe(face_video))]
    fake_voice = synth.resynthesize("griffin_lim", held_out[4], np.random.default_rng(0))
    dub = write_video(tmp_path / "dub.mp4", frames * 3, fps=4, audio=fake_voice)
    v = scanner.scan(dub)
    assert v.kind == "video" and v.error is None and v.faces and v.voice is not None
    assert {e.detector for e in v.evidence} == {"face_blend", "voice"}
    assert [m.name for m in v.models] == ["face_blend", "voice", "voice_phase", "voice_whisper"]
    assert v.voice.probability is not None and v.voice.probability >= 0.5
    assert v.probability == max(v.voice.probability, v.faces[0].probability)
    # The face is a real LFW photo, which the face model scores as authentic; the voice is a vocoder copy: the
    # two disagree, and the verdict says so.
    assert v.faces[0].probability < 0.25 and v.label == "manipulated", (v.faces[0].probability, v.label)
    assert v.cross_check and "voice sounds synthetic" in v.cross_check
    html_path = tmp_path / "r.html"
    from deepscreen.report import write_html

    write_html([v], html_path)
    html = html_path.read_text()
    assert "probability of a synthetic voice over time" in html and "Face: probability" in html


def test_silent_video_has_no_voice_part(scanner, tmp_path):
    v = scanner.scan(write_video(tmp_path / "silent.mp4", level_frames(10), fps=10))
    assert v.voice is None and all(e.detector != "voice" for e in v.evidence)


def test_cli_scans_audio_and_reports_bad_audio(tmp_path, held_out):
    good = write_audio(tmp_path / "a.wav", held_out[5], "wav")
    broken = tmp_path / "b.ogg"
    broken.write_bytes(b"OggS" + bytes(200))
    res = subprocess.run([sys.executable, "-m", "deepscreen.cli", "scan", "--json", str(good), str(broken)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [d["kind"] for d in lines] == ["audio", "unknown"]
    assert lines[0]["voice"]["probability"] is not None
    assert lines[1]["error"].startswith(str(broken))
    assert sum(str(broken) in line for line in res.stderr.splitlines()) == 1


def test_phase_channel_sees_griffin_lim_guess_phase(held_out):
    """linear_if's second channel: a steady tone keeps its instantaneous frequency, noise does not, and Griffin-Lim
    copies of real speech (phase guessed from magnitudes) wander less at 4-8 kHz than the speech they came from:
    its iterations smooth the phase of the noisy high band that real speech leaves random."""
    from deepscreen.detectors.voicenet import features

    t = np.arange(32000) / 16000
    tone, noise = np.sin(2 * np.pi * 1000 * t), np.random.default_rng(0).standard_normal(32000) * 0.1
    feats = features(np.stack([tone, noise]).astype(np.float32), "linear_if")
    assert feats.shape == (2, 2, 80, 201)
    band = int(1000 / 8000 * 81) - 1  # the band centred nearest 1 kHz
    assert feats[0, 1, band].mean() < 0.1 < 0.4 < feats[1, 1, band].mean()
    rng = np.random.default_rng(1)
    wander = lambda x: float(features(x[None, :32000], "linear_if")[0, 1, 40:].mean())  # noqa: E731
    real = [wander(x) for x in held_out[:4]]
    fake = [wander(synth.resynthesize("griffin_lim", x[:32000], rng)) for x in held_out[:4]]
    assert all(f < r - 0.03 for r, f in zip(real, fake)), (real, fake)


@pytest.mark.slow
def test_phase_novelty_learns_real_speech_only_and_finds_griffin_lim(tmp_path, held_out):
    """PhaseNovelty sees no forgery: fitted on windows of real speech alone, it puts held-out real speech near the
    centre and Griffin-Lim copies of it far out (their harmonics' phase does not glide like a recorded one), and it
    gives the same distances after a save and load."""
    import torch

    from deepscreen.detectors.voicenet import PHASE_STATS, PhaseNovelty, features, load_weights, save_weights

    rows = [r for r in manifest(SPEECH_DIR) if split_of(r["speaker"]) == "train" and float(r["duration_s"]) >= 9]
    windows = [read_audio(SPEECH_DIR / r["path"]).samples[s:s + 32000] for r in rows[:60] for s in (0, 32000, 64000)]
    stats = features(np.stack(windows), "phase")
    assert stats.shape == (180, PHASE_STATS) and torch.isfinite(stats).all()
    model = PhaseNovelty(components=1).fit([stats]).eval()
    rng = np.random.default_rng(3)
    real = np.stack([x[:32000] for x in held_out])
    fake = np.stack([synth.resynthesize("griffin_lim", x[:32000], rng) for x in held_out])
    with torch.no_grad():
        d_real, d_fake = model(features(real, "phase")), model(features(fake, "phase"))
    assert d_real.max() < d_fake.min(), (d_real, d_fake)
    save_weights(model, tmp_path / "phase.safetensors", {"frontend": "phase"})
    loaded, meta = load_weights(tmp_path / "phase.safetensors")
    assert isinstance(loaded, PhaseNovelty) and meta["frontend"] == "phase"
    with torch.no_grad():
        assert torch.allclose(loaded(features(fake, "phase")), d_fake)
    silence = features(np.zeros((1, 32000), np.float32), "phase")  # no peak anywhere: finite, not NaN
    assert torch.isfinite(silence).all()


@pytest.mark.slow
def test_one_class_head_learns_real_direction_and_round_trips(tmp_path):
    """The "oc" head (one-class softmax): a few steps on tones (real) against noise (fake) put the real class at a
    lower synthetic-logit than the fakes, and the saved weights give the same outputs after loading."""
    import torch

    from deepscreen.detectors.voicenet import VoiceNet, features, load_weights, oc_softmax_loss, save_weights

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    tones = [np.sin(2 * np.pi * f * t) * 0.3 for f in rng.uniform(150, 400, 8)]
    noise = [rng.standard_normal(32000) * 0.1 for _ in range(8)]
    x = features(np.stack(tones + noise).astype(np.float32))
    y = torch.tensor([0.0] * 8 + [1.0] * 8)
    model = VoiceNet(8, "linear", "oc")
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    first = oc_softmax_loss(model(x), y).item()
    for _ in range(30):
        loss = oc_softmax_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        z = model(x)
    assert loss.item() < first / 2 and z[:8].max() < z[8:].min()
    save_weights(model, tmp_path / "oc.safetensors", {"width": 8, "frontend": "linear", "head": "oc"})
    loaded, _ = load_weights(tmp_path / "oc.safetensors")
    with torch.no_grad():
        assert torch.allclose(loaded(x), z, atol=1e-5)


@pytest.mark.slow
def test_waveform_front_end_learns_and_round_trips(tmp_path):
    """The "wave" front end: gain does not change its input, it makes the filterbank's 80 x 200 grid from the
    waveform, it learns (a few steps separate pulse trains from the same line spectra with random phases), and
    the weights round-trip."""
    import torch

    from deepscreen.detectors.voicenet import VoiceNet, features, load_weights, save_weights

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 32000)).astype(np.float32)
    assert torch.allclose(features(x, "wave"), features(3 * x, "wave"), atol=1e-4)

    def pulses(random_phase: bool) -> np.ndarray:
        spec = np.zeros(32000 // 2 + 1, complex)
        spec[::int(rng.integers(100, 200))] = 1.0  # a periodic pulse train's line spectrum
        if random_phase:
            spec *= np.exp(2j * np.pi * rng.random(spec.shape))
        return np.fft.irfft(spec, 32000)

    batch = features(np.stack([pulses(False) for _ in range(8)] + [pulses(True) for _ in range(8)]), "wave")
    y = torch.tensor([0.0] * 8 + [1.0] * 8)
    model = VoiceNet(8, "wave")
    assert model.wave(batch).shape == (16, 1, 80, 200)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(40):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        z = model(batch)
    assert z[:8].max() < z[8:].min()
    save_weights(model, tmp_path / "wave.safetensors", {"width": 8, "frontend": "wave", "head": "linear"})
    loaded, _ = load_weights(tmp_path / "wave.safetensors")
    with torch.no_grad():
        assert torch.allclose(loaded(batch), z, atol=1e-5)


# ---------------------------------------------------------------- the model card's table, on a small scale


def test_test_table_covers_every_generator_and_marks_the_unseen(held_out):
    """The table `train-voice --eval-only` prints for the committed weights, on 4 held-out utterances."""
    from deepscreen.config import MODELS_DIR
    from deepscreen.detectors.voice import VoiceDetector
    from deepscreen.detectors.voicenet import load_weights
    from deepscreen.training.voice_data import _pack
    from deepscreen.training.voice_train import config_of, format_report, score_test_split

    clips = [x[: 16000 * 3] for x in held_out[:4]]
    speaker = next(f"s{i}" for i in range(999) if split_of(f"s{i}") == "test")  # a name the split puts in test
    pack = lambda xs: _pack(xs, [speaker] * len(xs), [f"u{i}" for i in range(len(xs))])  # noqa: E731
    rng = np.random.default_rng(5)
    names = [*synth.GENERATORS, *synth.UNSEEN]
    data = {"real": pack(clips), **{g: pack([synth.resynthesize(g, x, rng) for x in clips]) for g in names}}
    _, meta = load_weights(MODELS_DIR / "voice.safetensors")
    report = score_test_split(VoiceDetector().score_windows, config_of(meta), data)  # as the scanner scores
    assert sorted(report["generators"]) == sorted(names) and report["counts"]["test_real"] == 4
    # unseen: what no recipe trains on, less what these weights were fine-tuned on (v1.4: Piper)
    assert [g for g, r in report["generators"].items() if r["unseen"]] == \
        [g for g in synth.UNSEEN if g not in meta["generators"]]
    assert not any(r["held_out"] for r in report["generators"].values())
    for r in [*report["generators"].values(), report["in_domain"]]:
        assert 0 <= r["eer"] <= 1 and 0 <= r["auc"] <= 1
    assert report["in_domain"]["auc"] >= 0.9  # the trained families, as in the card
    assert set(report["real_fpr_at_0.5"]) == {"clean", "mp3_64k", "opus_24k"}
    text = format_report({"config": {"steps": 4000}, "train_s": 0, **report})
    assert "(never trained on)" in text and "phase_vocoder" in text and "piper" in text


def test_one_pass_gives_each_model_and_the_pair_as_the_scanner_scores_them(held_out):
    """`train-voice --ensemble` and `--eval-only` score each model and their combination in one pass
    (`evaluate_views`): each table must be what scoring that model alone, or the scanner itself, gives."""
    from deepscreen.config import MODELS_DIR
    from deepscreen.detectors.voice import VoiceDetector
    from deepscreen.detectors.voicenet import Branch, calibrated_logits, calibrated_max
    from deepscreen.training.voice_data import _pack
    from deepscreen.training.voice_train import evaluate, evaluate_views

    speaker = next(f"s{i}" for i in range(999) if split_of(f"s{i}") == "test")
    clips = [x[: 16000 * 3] for x in held_out[:3]]
    pack = lambda xs: _pack(xs, [speaker] * len(xs), [f"u{i}" for i in range(len(xs))])  # noqa: E731
    data = {"real": pack(clips), "griffin_lim": pack([synth.resynthesize("griffin_lim", x, np.random.default_rng(1))
                                                      for x in clips])}
    branches = [Branch.load(MODELS_DIR / f"{n}.safetensors") for n in ("voice", "voice_phase")]
    views = {"linear": lambda z: z[0], "phase": lambda z: z[1], "combined": lambda z: z.max(axis=0)}
    got = evaluate_views(lambda w: calibrated_logits(branches, w), views, data, "test", ["griffin_lim"],
                         ("clean", "mp3_64k"))
    for name, scorer in [("linear", lambda w: calibrated_max(branches[:1], w)),
                         ("phase", lambda w: calibrated_max(branches[1:], w)),
                         ("combined", VoiceDetector().score_windows)]:
        alone = evaluate(scorer, data, "test", ["griffin_lim"], ("clean", "mp3_64k"))
        for src in ("real", "griffin_lim"):
            for ch in ("clean", "mp3_64k"):
                assert len(got[name][src][ch]) == 3
                assert np.allclose(got[name][src][ch], alone[src][ch], atol=1e-4), (name, src, ch)
    assert not np.allclose(got["linear"]["real"]["clean"], got["phase"]["real"]["clean"])  # different models


def test_optional_generator_is_trained_on_only_when_added():
    from deepscreen.training.voice_train import VoiceTrainConfig, config_of, tested_generators, trained_generators

    assert "world_hnm" not in trained_generators(VoiceTrainConfig())
    cfg = VoiceTrainConfig(exclude=["griffin_lim"], add=["world_hnm"])
    assert trained_generators(cfg) == ["world", "world_vc", "lpc", "hifigan", "world_hnm"]
    assert tested_generators(cfg) == [*synth.GENERATORS, "world_hnm", *synth.UNSEEN]
    meta = {"steps": 10, "width": 16, "generators": trained_generators(cfg)}
    assert config_of(meta).exclude == ["griffin_lim"] and config_of(meta).add == ["world_hnm"]


def test_random_eq_recolours_some_windows_and_keeps_the_rest(held_out):
    """The `--augment eq` ablation: about half the windows get a new spectral colour (their band energies change
    by several dB), the rest are untouched; no window is clipped or silenced."""
    from deepscreen.detectors.voicenet import features
    from deepscreen.training.voice_train import random_eq

    x = np.stack([h[: 32000] for h in held_out])
    y = random_eq(x, np.random.default_rng(0))
    changed = ~np.all(y == x, axis=1)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert 0 < changed.sum() < len(x)
    assert np.allclose(np.abs(y).max(1), np.abs(x).max(1), rtol=0.05)  # same peak level
    shift = (features(y) - features(x)).abs().mean(dim=(1, 2, 3)).numpy()
    assert np.all(shift[changed] > 0.3) and np.all(shift[~changed] == 0)


# ---------------------------------------------------------------- two models, one detector


def test_calibrated_max_keeps_the_most_suspicious_expert():
    """Each model's logits go through its own calibration, then the higher one per window counts."""
    import torch

    from deepscreen.detectors.voicenet import Branch, VoiceNet, calibrated_max, score_windows

    torch.manual_seed(0)
    windows = np.random.default_rng(0).standard_normal((5, 32000)).astype(np.float32) * 0.1
    linear, wave = VoiceNet(8, "linear").eval(), VoiceNet(8, "wave").eval()
    a = Branch(linear, "linear", (0.5, -1.0))
    b = Branch(wave, "wave", (2.0, 0.3))
    za = 0.5 * score_windows(linear, windows, "linear") - 1.0
    zb = 2.0 * score_windows(wave, windows, "wave") + 0.3
    assert np.allclose(calibrated_max([a], windows), za, atol=1e-5)
    both = calibrated_max([a, b], windows)
    assert np.allclose(both, np.maximum(za, zb), atol=1e-5)
    assert calibrated_max([a, b], windows[:0]).shape == (0,)


def test_voice_explanation_names_the_trace_that_flagged_it(held_out):
    """A flagged voice is explained by what the model that flagged most of its suspicious windows looks for (one
    of CUES); natural speech is called natural."""
    from deepscreen.detectors.voice import CUES, VoiceDetector
    from deepscreen.media.speech import SpeechFinder

    detector, finder = VoiceDetector(), SpeechFinder()
    fake = synth.resynthesize("griffin_lim", held_out[0], np.random.default_rng(2))
    verdict = detector.analyse(fake, finder(fake)[1])
    assert verdict.probability >= 0.5
    named = [cue for cue in CUES.values() if cue in verdict.explanation]
    assert named and verdict.explanation.startswith("the voice sounds synthetic"), verdict.explanation
    real = detector.analyse(held_out[1], finder(held_out[1])[1])
    assert real.probability < 0.25 and "sounds natural" in real.explanation
    assert not any(cue in real.explanation for cue in CUES.values())


def test_voice_detector_uses_the_models_that_are_there(tmp_path, held_out):
    """models/ ships three files: the detector lists them (names and hashes) and scores windows with the first
    two's maximum (the Whisper branch fuses in `judge`); with the filterbank model alone it still works, under the
    version its own file carries."""
    import shutil

    from deepscreen.config import MODELS_DIR
    from deepscreen.detectors.voice import VoiceDetector
    from deepscreen.detectors.voicenet import Branch, calibrated_max

    full = VoiceDetector()
    assert [m.name for m in full.models()] == ["voice", "voice_phase", "voice_whisper"] and full.version == "1.6"
    assert len({m.sha256 for m in full.models()}) == 3
    shutil.copy(MODELS_DIR / "voice.safetensors", tmp_path / "voice.safetensors")
    alone = VoiceDetector(weights=tmp_path / "voice.safetensors")
    assert [m.name for m in alone.models()] == ["voice"] and alone.version == alone.models()[0].version == "1.4"
    windows = np.stack([held_out[0][:32000], held_out[1][:32000]])
    z_full, z_alone = full.score_windows(windows), alone.score_windows(windows)
    z_rest = calibrated_max([Branch.load(MODELS_DIR / "voice_phase.safetensors")], windows)
    assert np.allclose(z_full, np.maximum(z_alone, z_rest), atol=1e-5)
    with pytest.raises(Exception, match="voice_phase"):  # asked for by name, so it must exist
        VoiceDetector(weights=tmp_path / "voice.safetensors", phase_weights=tmp_path / "voice_phase.safetensors")
