"""deepscreen.media on real files written here: formats, refusals, sampling."""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from deepscreen.config import Limits, Sampling
from deepscreen.media import MediaError, MediaInfo, iter_frames, probe, read_image, sample_times, sniff
from deepscreen.media import video as media_video
from media_factory import frame_number, level_frames, no_streams_mp4, sine, write_video

ALL = Sampling(all_frames=True)


def _read_all(path: Path, limits: Limits = Limits()) -> list:
    """Everything a scan would do with a file: probe, then decode."""
    info = probe(path, limits)
    return list(iter_frames(path, info, ALL, limits))


def _assert_one_line_error(exc: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(exc.value)
    assert path.name in msg and msg.split(":")[0].endswith(path.name), msg
    assert "\n" not in msg
    return msg


def _level(frame) -> int:
    return frame_number(frame.rgb)


# ---------------------------------------------------------------- files used by several tests


@pytest.fixture(scope="module")
def images(tmp_path_factory, lfw_face) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("images")
    out = {}
    for fmt, ext in [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif")]:
        out[fmt] = d / f"face.{ext}"
        Image.fromarray(lfw_face).save(out[fmt], fmt)
    return out


@pytest.fixture(scope="module")
def ten_s_clip(tmp_path_factory) -> Path:
    """10 s at 10 fps, 64x48, keyframe every 10 frames; frame i shows its number (media_factory.level_frames)."""
    return write_video(tmp_path_factory.mktemp("v") / "ten.mp4", level_frames(100), fps=10, options={"g": "10"})


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    """1 s at 10 fps with an AAC track."""
    return write_video(tmp_path_factory.mktemp("v") / "av.mp4", level_frames(10), fps=10, audio=sine(1.0))


# ---------------------------------------------------------------- sniff / probe / read_image


@pytest.mark.parametrize(
    "fmt,codec", [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tiff")]
)
def test_image_formats(images, lfw_face, fmt, codec):
    path = images[fmt]
    assert sniff(path) == "image"
    info = probe(path)
    h, w = lfw_face.shape[:2]
    assert (info.kind, info.width, info.height, info.codec, info.has_audio) == ("image", w, h, codec, False)
    rgb = read_image(path)
    assert rgb.shape == lfw_face.shape and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    err = np.abs(rgb.astype(int) - lfw_face).mean()
    assert err == 0 if fmt in ("PNG", "BMP", "TIFF") else err < 8
    frames = list(iter_frames(path, info))
    assert len(frames) == 1 and (frames[0].index, frames[0].time_s) == (0, 0.0)
    assert np.array_equal(frames[0].rgb, rgb)


def test_sniff_ignores_extension(images, tmp_path):
    fake = tmp_path / "really_a_jpeg.png"
    fake.write_bytes(images["JPEG"].read_bytes())
    assert sniff(fake) == "image"
    assert probe(fake).codec == "jpeg"


@pytest.mark.parametrize(
    "name,codec,decoded",
    [
        ("c.mp4", "libx264", "h264"),
        ("c.mkv", "libx264", "h264"),
        ("c.webm", "libvpx-vp9", "vp9"),
        ("c.avi", "mpeg4", "mpeg4"),
    ],
)
def test_video_containers(tmp_path, name, codec, decoded):
    path = write_video(tmp_path / name, level_frames(5), fps=10, codec=codec)
    assert sniff(path) == "video"
    info = probe(path)
    assert (info.kind, info.width, info.height, info.codec) == ("video", 64, 48, decoded)
    assert info.fps == pytest.approx(10) and info.frame_count == pytest.approx(5, abs=1)
    assert [_level(f) for f in iter_frames(path, info, ALL)] == [0, 1, 2, 3, 4]


def test_face_video_probe(face_video):
    info = probe(face_video)
    assert info.to_dict() == {
        "kind": "video", "width": 320, "height": 240, "duration_s": pytest.approx(2.0, abs=0.05), "fps": 25.0,
        "frame_count": 50, "codec": "h264", "has_audio": False,
    }


def test_video_with_audio_track(small_clip):
    info = probe(small_clip)
    assert info.kind == "video" and info.has_audio


def test_audio_only_mp4_and_m4a(tmp_path):
    mp4 = write_video(tmp_path / "voice.mp4", [], fps=25, audio=sine(1.0))
    m4a = write_video(tmp_path / "voice.m4a", [], fps=25, audio=sine(1.0), format="ipod")
    assert sniff(mp4) == "video"  # ftyp 'isom': only the streams can tell
    assert sniff(m4a) == "audio"  # ftyp 'M4A '
    for path in (mp4, m4a):
        info = probe(path)
        assert (info.kind, info.codec, info.has_audio, info.width) == ("audio", "aac", True, None)
        assert info.duration_s == pytest.approx(1.0, abs=0.1)
        with pytest.raises(MediaError) as exc:
            list(iter_frames(path, info))
        _assert_one_line_error(exc, path)


@pytest.mark.parametrize(
    "head",
    [b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC\x00\x00\x00\x22", b"OggS\x00\x02", b"ID3\x04\x00", b"\xff\xfb\x90\x64"],
)
def test_sniff_audio_signatures(tmp_path, head):
    path = tmp_path / "sound.bin"
    path.write_bytes(head + bytes(200))
    assert sniff(path) == "audio"


def test_probe_wav(tmp_path):
    import wave

    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((sine(0.5) * 32767).astype("<i2").tobytes())
    info = probe(path)
    assert (info.kind, info.codec) == ("audio", "pcm_s16le") and info.duration_s == pytest.approx(0.5)


def test_image_modes_become_rgb_uint8(tmp_path, lfw_face):
    grey = tmp_path / "grey.png"
    Image.fromarray(lfw_face).convert("L").save(grey)
    g = read_image(grey)
    assert g.shape == lfw_face.shape and (g[..., 0] == g[..., 2]).all()

    pal = tmp_path / "palette.png"
    Image.fromarray(lfw_face).convert("P").save(pal)
    assert np.abs(read_image(pal).astype(int) - lfw_face).mean() < 20

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top opaque red, bottom fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    a = read_image(tmp_path / "alpha.png")
    assert (a[0, 0] == [255, 0, 0]).all() and (a[7, 7] == [255, 255, 255]).all()

    deep = np.zeros((4, 6), np.uint16)
    deep[:, 2:4], deep[:, 4:] = 32896, 65535
    Image.fromarray(deep).save(tmp_path / "deep.png")  # 16-bit grey
    d = read_image(tmp_path / "deep.png")
    assert d.dtype == np.uint8 and list(d[0, ::2, 0]) == [0, 128, 255]


def test_multiframe_tiff_gives_first_frame(tmp_path):
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    red.save(tmp_path / "pages.tif", save_all=True, append_images=[blue])
    assert (read_image(tmp_path / "pages.tif") == [255, 0, 0]).all()


def test_exif_orientation_applied(tmp_path):
    stored = np.zeros((32, 64, 3), np.uint8)  # 64 wide, 32 tall: left half red, right half blue
    stored[:, :32, 0], stored[:, 32:, 2] = 255, 255
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    info = probe(path)
    assert (info.width, info.height) == (32, 64)
    rgb = read_image(path)
    assert rgb.shape == (64, 32, 3)
    assert rgb[:28, :, 0].mean() > 200 and rgb[36:, :, 2].mean() > 200  # left went to the top


def test_video_rotation_applied(tmp_path):
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:, :32, 0], stored[:, 32:, 2] = 255, 255
    path = tmp_path / "portrait.mp4"
    with av.open(str(path), "w") as c:  # write_video has no rotation option; the display matrix needs the stream
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(-90)  # counter-clockwise degrees: this is 90 clockwise, as phones write portrait
        for _ in range(3):
            c.mux(s.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        c.mux(s.encode())
    info = probe(path)
    assert (info.width, info.height) == (32, 64)
    rgb = next(iter_frames(path, info)).rgb
    assert rgb.shape == (64, 32, 3) and rgb.flags.c_contiguous
    assert rgb[:28, :, 0].mean() > 200 and rgb[36:, :, 2].mean() > 200


# ---------------------------------------------------------------- bad input: always MediaError, one line, file named


def _huge_png(path: Path, w: int = 30000, h: int = 30000) -> Path:
    """A tiny 1x1 PNG whose IHDR claims w x h: a decompression bomb's header without its body."""
    Image.new("1", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", w, h)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    path.write_bytes(bytes(data))
    return path


def _truncated(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.mark.parametrize(
    "case,expect",
    [
        ("empty", "empty"),
        ("missing", "no such file"),
        ("directory", "directory"),
        ("text", "looks like text"),
        ("binary", "unrecognised"),
        ("gif", "GIF"),
        ("truncated_mp4", "truncated or corrupt"),
        ("truncated_jpeg", "truncated"),
        ("huge_png", "30000x30000 = 900 MP, over the 50 MP limit"),
        ("no_streams", "has no video or sound stream"),
    ],
)
def test_bad_input_is_one_line_media_error(tmp_path, face_video, images, case, expect):
    def write(name: str, data: bytes) -> Path:
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    def gif() -> Path:
        Image.new("RGB", (4, 4)).save(tmp_path / "a.gif")
        return tmp_path / "a.gif"

    path = {
        "empty": lambda: write("empty.jpg", b""),
        "missing": lambda: tmp_path / "nope.mp4",
        "directory": lambda: tmp_path,
        "text": lambda: write("clip.mp4", b"hello, this is not a video\n"),
        "binary": lambda: write("x.mp4", bytes(range(7, 255))),
        "gif": gif,
        "truncated_mp4": lambda: _truncated(face_video, tmp_path / "cut.mp4", 0.4),
        "truncated_jpeg": lambda: _truncated(images["JPEG"], tmp_path / "cut.jpg", 0.5),
        "huge_png": lambda: _huge_png(tmp_path / "big.png"),
        "no_streams": lambda: no_streams_mp4(tmp_path / "hollow.mp4"),
    }[case]()
    with pytest.raises(MediaError) as exc:
        if sniff(path) == "image":
            probe(path)
            read_image(path)
        else:
            _read_all(path)
    assert expect in _assert_one_line_error(exc, path)


def test_huge_png_refused_fast_without_decoding(tmp_path):
    path = _huge_png(tmp_path / "bomb.png")
    start = time.perf_counter()
    for fn in (probe, read_image):
        with pytest.raises(MediaError, match=r"bomb\.png: image is 30000x30000 = 900 MP, over the 50 MP limit"):
            fn(path)
    assert time.perf_counter() - start < 0.5


def test_unreadable_file(tmp_path, images):
    path = tmp_path / "locked.jpg"
    path.write_bytes(images["JPEG"].read_bytes())
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("this user can read mode-000 files (root)")
        with pytest.raises(MediaError) as exc:
            probe(path)
        assert "permission denied" in _assert_one_line_error(exc, path)
    finally:
        path.chmod(0o644)


def test_limits(face_video, images):
    cases = [
        (Limits(max_file_bytes=1000), face_video, "over the 1000 bytes limit"),
        (Limits(max_duration_s=1.5), face_video, "video is 2.0 s long, over the 1.5 s limit"),
        (Limits(max_frame_pixels=320 * 200), face_video, "video frames are 320x240"),
        (Limits(max_image_pixels=10_000), images["PNG"], "image is 150x150"),
    ]
    for limits, path, expect in cases:
        with pytest.raises(MediaError) as exc:
            probe(path, limits)
        assert expect in _assert_one_line_error(exc, path)


def test_truncated_faststart_mp4_yields_what_decodes(tmp_path):
    faststart = {"movflags": "+faststart"}
    whole = write_video(tmp_path / "whole.mp4", level_frames(40), 10, options={"g": "5"}, container_options=faststart)
    data = whole.read_bytes()
    mdat = data.index(b"mdat")  # header first, so probe can still read a cut file
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: mdat + (len(data) - mdat) // 2])
    frames = list(iter_frames(half, probe(half), ALL))
    assert 5 <= len(frames) < 40
    assert [_level(f) for f in frames] == list(range(len(frames)))

    header_only = tmp_path / "header_only.mp4"
    header_only.write_bytes(data[: mdat + 20])
    with pytest.raises(MediaError, match="no decodable video frames") as exc:
        list(iter_frames(header_only, probe(header_only), ALL))
    _assert_one_line_error(exc, header_only)


def test_garbage_in_the_middle_never_tracebacks(tmp_path, face_video):
    data = bytearray(face_video.read_bytes())
    n = len(data)
    data[n // 3 : n // 2] = np.random.default_rng(0).integers(0, 256, n // 2 - n // 3, dtype=np.uint8).tobytes()
    path = tmp_path / "scrambled.mp4"
    path.write_bytes(bytes(data))
    try:
        frames = _read_all(path)
    except MediaError as exc:
        assert path.name in str(exc) and "\n" not in str(exc)
    else:
        assert frames and all(f.rgb.shape == (240, 320, 3) for f in frames)


# ---------------------------------------------------------------- sampling


def test_sample_times():
    t = sample_times(10.0, Sampling())
    assert len(t) == 16 and t == sorted(t) and 0 < t[0] < 0.5 and 9.5 < t[-1] < 10
    assert np.allclose(np.diff(t), 10 / 16)
    assert len(sample_times(2.0, Sampling())) == 8  # 4 per second caps 16
    assert len(sample_times(0.1, Sampling())) == 1
    assert sample_times(0.0, Sampling()) == [0.0]
    assert len(sample_times(10.0, Sampling(frames=16, max_fps=0))) == 16  # 0 = no rate cap


def test_sampled_frames_spread_over_ten_seconds(ten_s_clip):
    info = probe(ten_s_clip)
    targets = sample_times(info.duration_s, Sampling())
    frames = list(iter_frames(ten_s_clip, info))
    assert len(frames) == 16
    for f, target in zip(frames, targets):
        assert abs(f.time_s - target) <= 0.05 + 1e-6  # nearest frame at 10 fps
        assert f.index == _level(f) == round(f.time_s * 10)
        assert f.rgb.shape == (48, 64, 3) and f.rgb.dtype == np.uint8 and f.rgb.flags.c_contiguous
    assert [f.time_s for f in frames] == sorted({f.time_s for f in frames})


def test_seeking_gives_the_same_frames(ten_s_clip, monkeypatch, caplog):
    info, four = probe(ten_s_clip), Sampling(frames=4)  # targets 1.25, 3.75, 6.25, 8.75 s; keyframes every 1 s
    in_order = [(f.index, f.time_s, _level(f)) for f in iter_frames(ten_s_clip, info, four)]
    monkeypatch.setattr(media_video, "SEEK_GAP_S", 2.0)
    with caplog.at_level("DEBUG", logger=media_video.__name__):
        seeking = [(f.index, f.time_s, _level(f)) for f in iter_frames(ten_s_clip, info, four)]
    assert sum("seeked" in r.message for r in caplog.records) == 3
    assert seeking == in_order
    assert all(abs(i - 10 * t) <= 0.5 + 1e-6 and i == n for (i, _, n), t in zip(seeking, [1.25, 3.75, 6.25, 8.75]))


@pytest.mark.parametrize("options", [{"preset": "medium"}, {"x264-params": "bframes=16:b-pyramid=normal:b-adapt=0"}])
def test_dropping_unreferenced_frames_keeps_the_nearest_ones(tmp_path, monkeypatch, options):
    """Between sampling targets the decoder drops B-frames no other frame refers to, chosen per packet by the time
    it will be shown, so even long runs of B-frames (decoded up to 16 frames ahead of display) give the same
    frames as decoding everything."""
    clip = write_video(tmp_path / "b.mp4", level_frames(300), fps=30, options=options)
    info, decoded = probe(clip), []
    real_decode = media_video._decode

    def counting(*args):
        for frame in real_decode(*args):
            decoded.append(frame)
            yield frame

    monkeypatch.setattr(media_video, "_decode", counting)
    chosen = [(f.index, f.time_s, _level(f)) for f in iter_frames(clip, info)]
    dropping = len(decoded)
    decoded.clear()
    monkeypatch.setattr(media_video, "_NEAR_TARGET_FRAMES", 1e9)  # every frame is near a target: none dropped
    assert [(f.index, f.time_s, _level(f)) for f in iter_frames(clip, info)] == chosen
    assert dropping < 0.85 * len(decoded)
    targets = sample_times(info.duration_s, Sampling())
    assert all(abs(t - target) <= 0.5 / 30 + 1e-6 and i % 100 == n for (i, t, n), target in zip(chosen, targets))


def test_rate_cap_on_short_clip(face_video):
    info = probe(face_video)
    frames = list(iter_frames(face_video, info))  # 16 wanted, 4/s allowed: 8
    assert len(frames) == 8
    assert all(f.rgb.shape == (240, 320, 3) and f.rgb.dtype == np.uint8 for f in frames)
    assert np.all(np.diff([f.time_s for f in frames]) > 0.2)


def test_all_frames_and_its_bound(face_video):
    info = probe(face_video)
    frames = list(iter_frames(face_video, info, ALL))
    assert [f.index for f in frames] == list(range(50))
    assert np.allclose([f.time_s for f in frames], np.arange(50) / 25)
    assert len(list(iter_frames(face_video, info, ALL, Limits(max_frames_decoded=10)))) == 10


def test_unknown_duration_falls_back_to_rate_cap(ten_s_clip):
    info = probe(ten_s_clip)
    info = MediaInfo(**{**info.to_dict(), "duration_s": None})
    times = [f.time_s for f in iter_frames(ten_s_clip, info)]
    assert len(times) == 34  # every 3rd frame at 10 fps: 0.0, 0.3, ... 9.9
    assert np.all(np.diff(times) >= 0.25 - 1e-6)


def test_prefetched_keeps_order_errors_and_closes_the_source():
    from deepscreen.media.prefetch import prefetched

    closed = []

    def source(n, fail_at=None):
        try:
            for i in range(n):
                if i == fail_at:
                    raise MediaError(f"clip.mp4: broken at frame {i}")
                yield i
        finally:
            closed.append(n)

    assert list(prefetched(source(50))) == list(range(50))
    got = []
    with pytest.raises(MediaError, match="broken at frame 3"):
        for i in prefetched(source(10, fail_at=3)):
            got.append(i)
    assert got == [0, 1, 2]  # the items before the error still arrive, in order
    early = prefetched(source(1000))
    assert next(early) == 0
    early.close()  # the consumer stops: the producer thread ends and closes the source (the open file)
    assert closed == [50, 10, 1000]
