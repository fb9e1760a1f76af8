"""Still images through Pillow, with the size checked from the header before any pixel is decoded."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps

from deepscreen.config import Limits

from .errors import media_error, megapixels, wrapped
from .info import MediaInfo
from .sniff import sniff_format

# What Pillow raises for bad bytes (SyntaxError and struct.error come from plugin header parsers).
_PIL_ERRORS = (
    OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error, Image.DecompressionBombError
)
_EXIF_ORIENTATION = 0x0112


def image_info(path: Path, fmt: str, limits: Limits, data: bytes | None = None) -> MediaInfo:
    """Size (as displayed) and format from the header; `data`: the file's bytes when already read."""
    with wrapped(path, "cannot read image", *_PIL_ERRORS), _source(path, data) as fp:
        im = _open_checked(fp, path, fmt, limits)
        w, h = im.size
        if _orientation(im) in (5, 6, 7, 8):  # these orientations swap width and height
            w, h = h, w
        codec = "jpeg" if im.format == "MPO" else (im.format or fmt).lower()
        return MediaInfo("image", w, h, None, None, 1, codec, False, fmt)


def read_image(path: Path, limits: Limits = Limits(), fmt: str | None = None, data: bytes | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB as the image is meant to be seen (EXIF orientation applied); first frame of multi-page files.
    `fmt` (Pillow's format name) when the file was sniffed already; `data`: its bytes when already read."""
    path = Path(path)
    if fmt is None:
        kind, fmt = sniff_format(path, limits)
        if kind != "image":
            raise media_error(path, f"not an image (a {kind} file)")
    with wrapped(path, "cannot decode image", *_PIL_ERRORS), _source(path, data) as fp:
        im = _open_checked(fp, path, fmt, limits)
        # load() raises on truncated data, unless something set ImageFile.LOAD_TRUNCATED_IMAGES,
        # in which case Pillow pads with grey and a half-image would be scored as if whole.
        im.load()
        if _orientation(im) not in (1, None):
            try:
                im = ImageOps.exif_transpose(im)
            except _PIL_ERRORS:  # malformed EXIF: the pixels are still good, show them as stored
                pass
        return _to_rgb(im)


def _source(path: Path, data: bytes | None) -> IO[bytes]:
    return io.BytesIO(data) if data is not None else open(path, "rb")


def _open_checked(fp: IO[bytes], path: Path, fmt: str, limits: Limits) -> Image.Image:
    """Pillow's Image.open with our pixel limit instead of its own.

    Image.open refuses bombs only above 2x Image.MAX_IMAGE_PIXELS and then without the size; calling the format's
    factory directly (as Image.open does) reads just the header, so the limit is ours and the message exact."""
    Image.init()
    factory, accept = Image.OPEN[fmt]
    prefix = fp.read(16)
    ok = accept is None or accept(prefix)
    if not ok or isinstance(ok, str):  # a str is Pillow's "looks like it, but unsupported variant"
        raise media_error(path, f"not a valid {fmt} image")
    if fmt == "WEBP":  # Pillow's WebP plugin refuses a bomb itself, in its own words: measure it first
        fp.seek(0)
        size = _webp_size(fp.read(32))
        if size:
            _check_pixels(path, *size, limits)
    fp.seek(0)
    try:
        im = factory(fp, str(path))
    except Image.DecompressionBombError as exc:  # a plugin that checks while opening; the limit is ours
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{megapixels(int(found.group(1)))} MP" if found else "too large"
        raise media_error(path, f"image is {size}, over the {megapixels(limits.max_image_pixels)} MP limit") from None
    _check_pixels(path, *im.size, limits)
    return im


def _check_pixels(path: Path, w: int, h: int, limits: Limits) -> None:
    if w <= 0 or h <= 0:
        raise media_error(path, f"image has no pixels ({w}x{h})")
    if w * h > limits.max_image_pixels:
        raise media_error(
            path, f"image is {w}x{h} = {megapixels(w * h)} MP, over the {megapixels(limits.max_image_pixels)} MP limit"
        )


def _webp_size(head: bytes) -> tuple[int, int] | None:
    """Canvas size from a WebP header (RIFF, then a VP8X, VP8L or VP8 chunk), or None if it is not there."""
    chunk, data = head[12:16], head[20:]
    if chunk == b"VP8X" and len(data) >= 10:  # extended: 24-bit canvas width-1 and height-1
        return int.from_bytes(data[4:7], "little") + 1, int.from_bytes(data[7:10], "little") + 1
    if chunk == b"VP8L" and len(data) >= 5 and data[0] == 0x2F:  # lossless: 14-bit width-1 and height-1
        bits = int.from_bytes(data[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":  # lossy key frame: 14-bit sizes
        return int.from_bytes(data[6:8], "little") & 0x3FFF, int.from_bytes(data[8:10], "little") & 0x3FFF
    return None


def _orientation(im: Image.Image) -> int | None:
    # A PNG's eXIf chunk may follow the pixels; Pillow would decode the whole image to find it.
    if im.format == "PNG" and "exif" not in im.info:
        return None
    try:
        return im.getexif().get(_EXIF_ORIENTATION)
    except _PIL_ERRORS:  # malformed EXIF is common in edited photos and is no reason to refuse the pixels
        return None


def _to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I") or mode == "F":  # 16/32-bit grey: scale, since convert("RGB") clips at 255
        a = np.asarray(im, dtype=np.float32)
        hi = float(a.max()) if a.size else 0.0
        if mode.startswith("I;16"):
            a = a * (255.0 / 65535.0)
        elif mode == "F" and hi <= 1.0:
            a = a * 255.0
        elif hi > 255.0:
            a = a * (255.0 / max(hi, 65535.0))
        g = np.clip(a + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if "A" in mode or "a" in mode or "transparency" in im.info:
        # Composite over white, as a browser page shows it; dropping alpha would expose hidden pixels.
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)  # a fresh, writable, C-contiguous copy
