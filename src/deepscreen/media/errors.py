"""The one exception type for bad or refused input, with messages a person can act on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

# Longer paths are shortened to the file name so the message stays one readable line.
_MAX_PATH_CHARS = 80


class MediaError(Exception):
    """Bad or refused input. str(err) is ONE line that names the file, e.g.
    'clip.mp4: not a media file (looks like text)' or 'big.png: image is 30000x30000 = 900 MP, over the 50 MP limit'."""

    def __init__(self, message: str, path: Path | None = None):
        # Decoder messages can carry newlines; front ends print this as one line of a report or log.
        super().__init__(" ".join(str(message).split()))
        self.path = path


def shown_path(path: str | Path) -> tuple[str, bool]:
    """The path as valid UTF-8 text, and whether it had to be escaped to be that.

    A POSIX file name is bytes; Python keeps bytes that are not UTF-8 as lone surrogates, which a strict UTF-8
    stream (JSON, a database, PYTHONIOENCODING=utf-8) refuses. They are written as backslash escapes of the raw
    bytes instead ('\\xff'), so the name still shows which file it was."""
    s = str(path)
    try:
        s.encode("utf-8")
        return s, False
    except UnicodeEncodeError:
        pass
    try:
        raw = s.encode("utf-8", "surrogateescape")  # back to the bytes the file system holds
    except UnicodeEncodeError:  # surrogates that did not come from undecodable bytes
        return s.encode("utf-8", "backslashreplace").decode("ascii"), True
    return raw.decode("utf-8", "backslashreplace"), True


def label(path: Path) -> str:
    s = shown_path(path)[0]
    if len(s) > _MAX_PATH_CHARS:
        s = shown_path(Path(path).name)[0]
    # A file name may contain newlines or terminal escapes; never let them into a log line.
    return "".join(c if c.isprintable() else "?" for c in s)


def media_error(path: Path, reason: str) -> MediaError:
    return MediaError(f"{label(path)}: {reason}", Path(path))


def reason_of(exc: BaseException) -> str:
    """The useful part of a library's message (PyAV repeats errno and the file name)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


@contextlib.contextmanager
def wrapped(path: Path, what: str, *errors: type[BaseException]) -> Iterator[None]:
    """Turn decoder exceptions inside the block into MediaError('<file>: <what>: <reason>')."""
    try:
        yield
    except MediaError:
        raise
    except errors as exc:
        raise media_error(path, f"{what}: {reason_of(exc)}") from exc


def megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f}".removesuffix(".0")


def hms(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
