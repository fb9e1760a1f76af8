"""The voice detector's Whisper branch: encoded as the recording streams in, it must score each window exactly as
the lab does on a whole recording, and fuse with the other branches as the lab's stack was measured."""

import numpy as np
import torch

from test_voice_finetune import _speechlike


def _branch_file(tmp_path, stack=(0.8, 0.6, -0.3), stack_platt=(1.1, -0.5), floor=False):
    from deepscreen.detectors.voice_whisper import SeqHead
    from deepscreen.detectors.voicenet import save_weights

    torch.manual_seed(0)
    path = tmp_path / "voice_whisper.safetensors"
    save_weights(SeqHead(), path, {"name": "voice_whisper", "version": "9.9", "frontend": "whisper", "layer": 2,
                                   "platt": [0.7, 0.2], "recording_platt": [0.9, -1.0],
                                   "stack": {"weights": list(stack), "platt": list(stack_platt),
                                             "floor": floor}})
    return path


def test_streamed_whisper_windows_are_the_whole_recordings(tmp_path):
    """65 s of audio in blocks of odd sizes (three 30-s chunks, the last partial; windows across chunk edges and
    at the very end): every window's Whisper logit is that of the recording encoded whole, and the frames held at
    the end are a fraction of the recording's."""
    from deepscreen.detectors.voice import VoiceDetector, speech_windows
    from deepscreen.detectors.voice_whisper import encode_recording, encoder_frame, window_frames
    from deepscreen.media.speech import SpeechSegment

    x = _speechlike(65.0, seed=4)
    segments = [SpeechSegment(0.2, 31.0), SpeechSegment(58.5, 65.0)]
    spans = speech_windows(segments, len(x))
    detector = VoiceDetector(whisper_weights=_branch_file(tmp_path))
    whole = encode_recording(detector.whisper.encoder, x, (2,))[0]
    starts = encoder_frame(np.array([a for a, _ in spans]))
    expected = detector.whisper.logits(window_frames(whole, starts))

    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(len(x), 40, replace=False))
    blocks = np.split(x, cuts)
    per_model = detector._score_spans(iter(blocks), spans)
    assert per_model.shape == (len(detector.branches) + 1, len(spans))
    assert np.allclose(per_model[-1], expected, atol=1e-4)
    one_block = detector._score_spans(iter([x]), spans)
    assert np.allclose(one_block, per_model, atol=1e-4)

    from deepscreen.detectors.voice import _WhisperWindows

    first = np.array([a for a, _ in spans])
    windows = _WhisperWindows(detector.whisper, first, np.minimum.accumulate(first[::-1])[::-1])
    fed = windows.fed(iter(blocks))
    for _ in fed:
        pass
    assert np.allclose(windows.finish(fed), expected, atol=1e-4)
    # the silence between the segments is never held: frames before the second segment's first window (58.5 s,
    # frame 2925, less a window's margin) were dropped once the first segment's windows were scored
    assert windows.stream.first >= 2925 - 100 and len(windows.stream.frames) < 1500


def test_whisper_stack_fuses_windows_as_the_lab_measured_it(tmp_path):
    """The detector's recording probability is the lab's `Stack` of the two sides' recording-calibrated windows
    (the filterbank's with the phase branch kept where higher; the Whisper branch's likewise)."""
    from deepscreen.detectors.voice import VoiceDetector, speech_windows
    from deepscreen.fusion import utterance_logit
    from deepscreen.media.speech import SpeechSegment
    from deepscreen.training.voice_whisper_seq import Stack

    x = _speechlike(9.0, seed=5)
    segments = [SpeechSegment(0.5, 8.5)]
    said = {}
    # an intercept that puts the fusion under the main side (the floor holds it there), and one far above it
    for floor, w0 in ((False, -0.3), (True, -20.0), (True, 8.0)):
        path = _branch_file(tmp_path, stack=(0.8, 0.6, w0), floor=floor)
        detector = VoiceDetector(whisper_weights=path)
        assert [b.frontend for b in detector.branches] == ["linear", "phase"]
        per_model = detector._score_spans(iter([x]), speech_windows(segments, len(x)))
        (a1, b1), (a2, b2) = detector.main_recording_platt, detector.whisper.recording_platt
        main = a1 * per_model[:2].max(axis=0) + b1
        whisper = a2 * np.maximum(per_model[2], per_model[1]) + b2
        lab = Stack((0.8, 0.6, w0), (1.1, -0.5), floor)(np.zeros((1, 2)), [[main, whisper]])[0]
        p = said[floor, w0] = detector.analyse(x, segments).probability
        assert abs(np.log(p / (1 - p)) - lab) < 1e-6
        q = 1 / (1 + np.exp(-utterance_logit(main)))  # the main side alone, as the detector without the branch
    assert abs(said[False, -0.3] - q) > 1e-3  # the fusion moved it
    assert abs(said[True, -20.0] - q) < 1e-9  # held at the main side's own score
    assert said[True, 8.0] > q + 0.05  # above it: the fusion decides
    assert detector.version == "9.9"


def test_shipped_branch_loads_in_the_scanner_with_its_stack(tmp_path):
    """`voice_whisper_seq ship` on a small build: the head trained outside the calibration fold, the stack fitted
    on pairs of held-out runs' rows, and a file the voice detector loads as its Whisper branch."""
    import json

    from deepscreen.detectors.voice import VoiceDetector
    from deepscreen.detectors.voicenet import load_weights
    from deepscreen.training.voice_finetune import Recipe, save_frames
    from deepscreen.training.voice_whisper_seq import WHISPER_FILE, pooled_stack, save_sequences, ship

    rng = np.random.default_rng(0)
    rows, seqs = [], []
    for n in range(40):
        fake = n % 2 == 1
        frames = 150
        seq = rng.standard_normal((3, frames, 384)).astype(np.float16)
        if fake:
            seq[:, :, :8] += np.sin(np.arange(frames) / 3.0)[None, :, None].astype(np.float16)
        rows.append({"label": "fake" if fake else "real", "system": "S" if fake else "R", "fold": n % 5,
                     "variant": "clean", "starts": [0, 100], "phase": [-3.0, -3.0], "frames": 2 * frames})
        seqs.append(seq)
    save_frames(tmp_path / "voice_frames.npz", [np.zeros((2 * s.shape[1], 80), np.uint8) for s in seqs], rows)
    save_sequences(tmp_path / WHISPER_FILE, seqs, (1, 2, 4))
    runs = []
    for name, strength in (("fb", 1.0), ("wh", 0.3)):  # the filterbank run tells fakes apart better
        run = []
        for i in range(60):
            fake = i % 2 == 1
            w = rng.standard_normal(3) + (2.0 * strength if fake else -1.0)
            run.append({"i": i, "system": "S" if fake else "R", "fake": fake, "z": float(w.max()),
                        "zp": float(np.sort(w)[::-1][:2].mean()), "wz": w.tolist(), "wzp": w.tolist()})
        (tmp_path / f"{name}.json").write_text(json.dumps(run))
        runs.append(tmp_path / f"{name}.json")
    fused, n_rows = pooled_stack([tuple(runs)])
    assert n_rows == 60 and fused.weights[0] > fused.weights[1]
    out = tmp_path / "models" / "voice_whisper.safetensors"
    meta = ship(tmp_path, [tuple(runs)], Recipe(steps=30, batch=8, lr=3e-3), out, "9.8")
    assert meta["stack"]["weights"] == list(fused.weights) and meta["layer"] == 2
    _, saved = load_weights(out)
    assert saved["stack"] == meta["stack"] and saved["frontend"] == "whisper"
    detector = VoiceDetector(whisper_weights=out)
    assert detector.whisper.stack_platt == tuple(fused.platt) and detector.version == "9.8"
    assert detector.whisper.floor and (detector.calibration.slope, detector.calibration.intercept) == (1.0, 0.0)
