"""The scan core's two steps (prepare, judge), the media read once, and what the verdict records about how it was
made (the bands, per-stage timings)."""

from __future__ import annotations

import multiprocessing
import pickle

import av
import numpy as np
import pytest

import deepscreen
from deepscreen.config import SHARED_DIR, ScanConfig, Thresholds
from deepscreen.prepared import STAGES
from deepscreen.report import render_html
from media_factory import gradient, write_video

from conftest import needs_data


SPEECH = SHARED_DIR / "data/speech/librispeech/103/1240/103-1240-0000.flac"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """6 s of a LibriSpeech reader at 16 kHz."""
    from deepscreen.media.audio import read_audio

    return read_audio(needs_data(SPEECH)).samples[: 16000 * 6]


@pytest.fixture(scope="module")
def scanner():
    return deepscreen.Scanner()


@pytest.fixture(scope="module")
def clip_720p(tmp_path_factory, speech):
    """2 s of 1280x720 H.264 at 25 fps with 6 s of speech as AAC."""
    frames = [gradient(720, 1280, shift=2 * i) for i in range(50)]
    return write_video(tmp_path_factory.mktemp("hd") / "hd.mp4", frames, fps=25, audio=speech)


@pytest.fixture(scope="module")
def face_with_sound(tmp_path_factory, lfw_face, speech):
    """A moving LFW face with speech: every stage has work to do."""
    frames = []
    for i in range(50):
        frame = gradient(240, 320, shift=2 * i)
        frame[45:195, 8 + 3 * i:158 + 3 * i] = lfw_face
        frames.append(frame)
    return write_video(tmp_path_factory.mktemp("face_sound") / "face.mp4", frames, fps=25, audio=speech[:16000 * 4])


def _same(a, b) -> dict:
    """A verdict's JSON, less what measures the run."""
    d = a.to_dict()
    for key in ("elapsed_s", "timings"):
        d.pop(key)
    return d


def test_a_video_with_sound_is_opened_twice(scanner, clip_720p, monkeypatch):
    """Once for its pictures (the probe's container decodes them), once for its sound; never sniffed again."""
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    v = scanner.scan(clip_720p)
    assert v.error is None and v.kind == "video" and v.media["width"] == 1280 and v.voice is not None
    assert v.voice.speech_s > 1 and v.voice.probability is not None  # the sound was scored, not skipped
    assert len(opened) == 2


def test_an_audio_file_is_opened_once_and_a_photo_never_by_ffmpeg(scanner, speech, tmp_path, monkeypatch):
    from deepscreen.media.audio import write_audio
    from PIL import Image

    sound = tmp_path / "speech.flac"
    write_audio(sound, speech, "flac", "flac")
    photo = tmp_path / "photo.png"
    Image.fromarray(gradient(240, 320)).save(photo)
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    assert scanner.scan(sound).voice.probability is not None and len(opened) == 1
    assert scanner.scan(photo).kind == "image" and len(opened) == 1


def test_judge_of_prepare_equals_scan(scanner, face_with_sound):
    prepared = scanner.prepare(face_with_sound)
    assert prepared.error is None and prepared.crops and prepared.sound.segments
    again = scanner.judge(pickle.loads(pickle.dumps(prepared)))
    assert _same(again, None) == _same(scanner.scan(face_with_sound), None)
    assert again.faces[0].peak_crop is not None  # the crops travel with the prepared file


def _prepare_elsewhere(path):
    return pickle.dumps(deepscreen.Scanner().prepare(path))


@pytest.mark.slow
def test_prepare_in_another_process(scanner, face_with_sound):
    """What a batch engine does: decode and find faces in one worker process, judge in another."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        blob = pool.apply(_prepare_elsewhere, (str(face_with_sound),))
    assert _same(scanner.judge(pickle.loads(blob)), None) == _same(scanner.scan(face_with_sound), None)


def test_long_sound_is_decoded_again_not_carried(scanner, clip_720p, monkeypatch):
    """A sound track over HELD_SOUND_S is not carried in Prepared: judge reads its windows from the file, and the
    verdict is the same."""
    import importlib

    scan_module = importlib.import_module("deepscreen.scan")  # the package's `scan` attribute is the function
    held = scanner.scan(clip_720p)
    monkeypatch.setattr(scan_module, "HELD_SOUND_S", 1.0)
    prepared = scanner.prepare(clip_720p)
    assert prepared.sound.samples is None and prepared.sound.n_samples >= 6 * 16000
    assert _same(scanner.judge(prepared), None) == _same(held, None)


def test_a_bad_file_is_an_error_in_prepare_and_judge(scanner, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    prepared = scanner.prepare(bad)
    assert prepared.error.startswith(f"{bad}: cannot open as media")
    v = scanner.judge(pickle.loads(pickle.dumps(prepared)))
    assert v.label == "error" and v.error == prepared.error and set(v.timings) == set(STAGES)


def test_timings_per_stage(scanner, face_with_sound):
    v = scanner.scan(face_with_sound)
    assert list(v.timings) == list(STAGES)
    for stage in ("decode", "faces", "speech", "face_cnn", "voice", "fusion"):
        assert v.timings[stage] > 0, stage
    assert sum(v.timings.values()) < 3 * v.elapsed_s * 1000  # milliseconds, not seconds
    assert set(v.to_dict()["timings"]) == set(STAGES)
    html = render_html([v])
    assert "face cnn" in html and "ms" in html


def test_verdict_records_its_bands(face_with_sound, scanner):
    bands = Thresholds(suspicious=0.4, manipulated=0.9)
    strict = deepscreen.Scanner(ScanConfig(thresholds=bands))
    v = strict.scan(face_with_sound)
    assert v.thresholds == bands and v.to_dict()["thresholds"] == {"suspicious": 0.4, "manipulated": 0.9}
    assert v.label == bands.label(v.probability)
    assert "from 40% to below 90%" in render_html([v])  # the report states the verdict's own bands
    default = scanner.scan(face_with_sound)
    assert "different bands" in render_html([v, default]) and "different bands" not in render_html([v])
