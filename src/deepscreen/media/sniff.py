"""Decide what a file is from its leading bytes. Extensions lie (renamed files, uploads), magic numbers rarely do."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from deepscreen.config import Limits

from .errors import media_error
from .io import file_sha256  # noqa: F401  (the lab imports it from here)

_HEAD_BYTES = 512  # enough for every signature below and for a fair look at text
# Brands of ftyp boxes that hold only sound (iTunes audio, audiobooks, Flash audio).
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
# HEIF/AVIF stills share the ftyp box with MP4 but no decoder here reads them.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}
# QuickTime files written before ftyp existed start straight with one of these atoms.
_QT_ATOMS = {b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"}
_BMP_DIB_SIZES = {12, 40, 52, 56, 64, 108, 124}  # "BM" alone is too weak a signature
_NAME_MAX = 255  # bytes in one path component on Linux, macOS and Windows file systems


def sniff(path: Path, limits: Limits = Limits()) -> str:
    """'image' | 'video' | 'audio' from the file's leading bytes; MediaError for anything else."""
    return sniff_format(path, limits)[0]


def sniff_format(path: Path, limits: Limits = Limits()) -> tuple[str, str]:
    """(kind, format): format is Pillow's name for images and FFmpeg's demuxer name otherwise.

    Forcing that demuxer later keeps FFmpeg from guessing its way into some other parser."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise media_error(path, "no such file") from None
    except PermissionError:
        raise media_error(path, "permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in a path given through the API
        raise media_error(path, access_problem(path, exc)) from None
    if stat.S_ISDIR(st.st_mode):
        raise media_error(path, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device could block or never end
        raise media_error(path, "not a regular file")
    if st.st_size == 0:
        raise media_error(path, "empty file (0 bytes)")
    if st.st_size > limits.max_file_bytes:
        raise media_error(path, f"file is {_human(st.st_size)}, over the {_human(limits.max_file_bytes)} limit")
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except PermissionError:
        raise media_error(path, "permission denied (cannot read)") from None
    except OSError as exc:
        raise media_error(path, f"cannot read ({exc.strerror or exc})") from None

    found = _match(head)
    if isinstance(found, str):
        raise media_error(path, found)
    if found is None:
        if _looks_like_text(head):
            raise media_error(path, "not a media file (looks like text)")
        raise media_error(path, f"not a media file (unrecognised format, starts with {head[:8].hex(' ')})")
    return found


def access_problem(path: Path, exc: OSError | ValueError) -> str:
    """Why a path cannot even be looked at, in words (too long, a link loop), for the one-line error."""
    if isinstance(exc, ValueError):
        return "invalid path (contains a NUL byte)"
    if exc.errno == errno.ENAMETOOLONG:
        longest = max((len(os.fsencode(part)) for part in Path(path).parts), default=0)
        if longest > _NAME_MAX:
            return f"a name in the path is {longest} bytes, over the {_NAME_MAX}-byte limit of the file system"
        return f"path is {len(os.fsencode(path))} bytes, too long for the file system"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (too many levels of links)"
    return f"cannot access ({exc.strerror or exc})"


def _match(h: bytes) -> tuple[str, str] | str | None:
    """(kind, format), a refusal reason, or None when nothing matches."""
    if h.startswith(b"\xff\xd8\xff"):
        return "image", "JPEG"
    if h.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "PNG"
    if h[:4] == b"RIFF" and len(h) >= 12:
        sub = h[8:12]
        if sub == b"WEBP":
            return "image", "WEBP"
        if sub == b"AVI ":
            return "video", "avi"
        if sub == b"WAVE":
            return "audio", "wav"
    if h[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image", "TIFF"
    if h[:2] == b"BM" and len(h) >= 18 and int.from_bytes(h[14:18], "little") in _BMP_DIB_SIZES:
        return "image", "BMP"
    if h[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF is not supported (convert it to PNG or MP4)"
    if h[4:8] == b"ftyp" and len(h) >= 12:
        brand = h[8:12]
        if brand in _HEIF_BRANDS:
            return "HEIF/AVIF images are not supported (convert to JPEG or PNG)"
        return ("audio" if brand in _AUDIO_BRANDS else "video"), "mov"
    if h[4:8] in _QT_ATOMS:
        return "video", "mov"
    if h[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska and WebM
        return "video", "matroska"
    if h[:4] == b"fLaC":
        return "audio", "flac"
    if h[:4] == b"OggS":
        return "audio", "ogg"
    if h[:3] == b"ID3":
        return "audio", "mp3"
    if len(h) >= 2 and h[0] == 0xFF and h[1] & 0xE0 == 0xE0:  # MPEG audio frame sync
        layer = (h[1] >> 1) & 3
        return "audio", ("aac" if layer == 0 else "mp3")  # layer bits 00 is ADTS AAC
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        s = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a multi-byte character cut by the read
            return False
        s = head[: exc.start].decode("utf-8")
    s = s.lstrip("\ufeff")
    return bool(s) and all(c.isprintable() or c in "\t\n\r\f\v" for c in s)


def _human(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"

