"""Audio: decoding every supported container, the sound track of videos, limits and bad input, and speech finding."""

from __future__ import annotations

import numpy as np
import pytest

from deepscreen.config import SHARED_DIR, Limits
from deepscreen.media import MediaError, probe, sniff
from deepscreen.media.audio import read_audio
from deepscreen.media.speech import SpeechFinder

from conftest import needs_data
from media_factory import AUDIO_FORMATS, level_frames, sine, write_audio, write_video

SPEECH = SHARED_DIR / "data/speech/librispeech/103/1240/103-1240-0000.flac"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    needs_data(SPEECH)
    return read_audio(SPEECH).samples[: 16000 * 6]


@pytest.fixture(scope="module")
def finder() -> SpeechFinder:
    return SpeechFinder()


@pytest.mark.parametrize("kind", sorted(AUDIO_FORMATS))
def test_audio_formats_decode_to_16k_mono(tmp_path, speech, kind):
    path = write_audio(tmp_path / f"speech.{kind}", speech, kind)
    assert sniff(path) == "audio"
    info = probe(path)
    assert info.kind == "audio" and info.has_audio
    audio = read_audio(path)
    assert audio.rate == 16000 and audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(audio.duration_s - 6.0) < 0.15  # codecs pad a frame or two
    if kind in ("wav", "flac"):  # lossless: the same samples back
        assert np.abs(audio.samples[: len(speech)] - speech).max() < 1e-3


def test_extension_does_not_decide(tmp_path, speech):
    path = write_audio(tmp_path / "looks_like_a_picture.jpg", speech, "mp3")
    assert sniff(path) == "audio"
    assert read_audio(path).duration_s > 5


def test_sound_track_of_a_video(tmp_path, speech):
    path = write_video(tmp_path / "talk.mp4", level_frames(30), fps=10, audio=speech[:48000])
    info = probe(path)
    assert info.kind == "video" and info.has_audio
    audio = read_audio(path)
    assert abs(audio.duration_s - 3.0) < 0.15
    assert np.corrcoef(audio.samples[2000:40000], speech[2000:40000])[0, 1] > 0.8


def test_video_without_sound_says_so(tmp_path):
    path = write_video(tmp_path / "silent.mp4", level_frames(10), fps=10)
    with pytest.raises(MediaError, match=r"silent\.mp4: has no sound track"):
        read_audio(path)


def test_image_has_no_sound(tmp_path, lfw_face_path):
    with pytest.raises(MediaError, match="is an image"):
        read_audio(lfw_face_path)


def test_zero_length_and_text_are_clear_errors(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty\.wav: empty file"):
        read_audio(empty)
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio\n" * 20)
    with pytest.raises(MediaError, match=r"notes\.mp3: not a media file"):
        probe(text)


def test_wav_with_no_samples_is_an_error(tmp_path):
    import wave

    path = tmp_path / "nothing.wav"
    with wave.open(str(path), "wb") as w:  # a valid header and not one sample
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    with pytest.raises(MediaError, match=r"nothing\.wav: "):
        probe(path)
        read_audio(path)


@pytest.mark.parametrize("kind", ["wav", "mp3", "m4a"])
def test_truncated_audio_keeps_what_decodes(tmp_path, speech, kind):
    full = write_audio(tmp_path / f"full.{kind}", speech, kind)
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    try:
        audio = read_audio(cut)
    except MediaError as err:  # an M4A cut before its index cannot be read at all: a clear error is right
        assert str(err).startswith(str(cut)) and "\n" not in str(err)
    else:
        assert 1.0 < audio.duration_s < 5.0


def test_garbage_after_a_valid_header(tmp_path, speech):
    good = write_audio(tmp_path / "good.mp3", speech, "mp3").read_bytes()
    bad = tmp_path / "bad.mp3"
    rng = np.random.default_rng(0)
    bad.write_bytes(good[:2000] + rng.integers(0, 256, 60_000, dtype=np.uint8).tobytes())
    try:
        audio = read_audio(bad)
    except MediaError as err:
        assert str(err).startswith(f"{bad}:")
    else:
        assert np.isfinite(audio.samples).all() and np.abs(audio.samples).max() <= 1.0


def _claim_samples(flac: bytes, total: int) -> bytes:
    """Rewrite the total-samples field of a FLAC STREAMINFO block (36 bits at byte 21 of the block, after
    'fLaC' and the 4-byte block header): the file then says it lasts that long, without the data."""
    assert flac[:4] == b"fLaC"
    pos = 4 + 4 + 13  # sample rate (20 bits), channels (3), bits (5), then the 36-bit count
    packed = int.from_bytes(flac[pos:pos + 5], "big")
    packed = (packed & ~((1 << 36) - 1)) | total
    return flac[:pos] + packed.to_bytes(5, "big") + flac[pos + 5:]


def test_ten_hour_file_is_refused_by_its_header(tmp_path, speech):
    short = write_audio(tmp_path / "short.flac", speech[:16000], "flac").read_bytes()
    path = tmp_path / "ten_hours.flac"  # the header says 10 h; refusing it must not need 10 h of data
    path.write_bytes(_claim_samples(short, 10 * 3600 * 16000))
    with pytest.raises(MediaError, match=r"ten_hours\.flac: audio is 10:00:00 long, over the 3:00:00 limit"):
        probe(path)


def test_duration_limit_applies_to_audio(tmp_path, speech):
    path = write_audio(tmp_path / "long.flac", speech, "flac")
    with pytest.raises(MediaError, match="over the"):
        probe(path, Limits(max_duration_s=2.0))
    # and decoding stops at the limit even when the header states no duration
    assert read_audio(path, Limits(max_duration_s=2.0)).duration_s <= 2.0


def test_speech_is_found_and_music_is_not(finder, speech):
    pad = np.zeros(16000, np.float32)
    _, segments = finder(np.concatenate([pad, speech, pad]))
    assert segments, "no speech found in real speech"
    assert segments[0].start_s >= 0.7 and segments[-1].end_s <= 7.3
    assert sum(s.duration_s for s in segments) > 3.0
    tone = sine(5.0)
    chord = tone + sine(5.0, hz=554.4) + sine(5.0, hz=659.3)
    noise = np.random.default_rng(0).normal(0, 0.05, 80000).astype(np.float32)
    for name, x in [("silence", np.zeros(80000, np.float32)), ("tone", tone), ("chord", chord / 3), ("noise", noise)]:
        assert finder(x)[1] == [], f"speech found in {name}"
