"""Uploads streamed to disk, named by their SHA-256 under <data_dir>/media/, never by the client's file name.

The size limit is enforced while the body streams in: a declared Content-Length over it is refused before a byte
is read, and a body that grows past it (chunked, or a lying header) is refused as soon as it does, so a client
cannot make the server read or store more than the limit.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

from deepscreen.config import Limits
from deepscreen.media.errors import MediaError, label
from deepscreen.media.sniff import sniff_format

MAX_FIELD_BYTES = 8192  # text fields (callback_url); anything longer is not a URL we would call
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file, allowed on top of the limit


class UploadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Stored:
    sha256: str
    size: int
    kind: str
    path: Path


def display_name(name: str | None) -> str:
    """The client's file name, kept only to show people: last path component, printable, bounded."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c if c.isprintable() else "?" for c in name).strip()[:200]
    return name or "upload"


def media_path(data_dir: Path, sha256: str) -> Path:
    return data_dir / "media" / sha256[:2] / sha256


class _Sink:
    """A temp file under the data dir that hashes and counts what is written, refusing past the limit."""

    def __init__(self, data_dir: Path, limit: int):
        tmp = data_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        self.path = tmp / secrets.token_hex(12)
        self.file = open(self.path, "wb")
        self.hash = hashlib.sha256()
        self.size = 0
        self.limit = limit

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise UploadError(413, f"upload is over the {self.limit} byte limit")
        self.hash.update(data)
        self.file.write(data)

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)

    def finish(self, data_dir: Path, name: str, limits: Limits) -> Stored:
        """Sniff the type from the bytes (415 if scan cannot read it), then move into the content-addressed store."""
        self.file.close()
        try:
            kind, _ = sniff_format(self.path, limits)
        except MediaError as err:
            self.path.unlink(missing_ok=True)
            raise UploadError(415, f"{name}: {_reason(err, self.path)}") from None
        digest = self.hash.hexdigest()
        final = media_path(data_dir, digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Same bytes, same name: whichever upload lands last replaces an identical file, atomically.
        os.replace(self.path, final)
        return Stored(digest, self.size, kind, final)


def _reason(err: MediaError, path: Path) -> str:
    """The reason without the temp file's name (the client never chose it and should not see it)."""
    text = str(err)
    prefix = label(path) + ": "
    return text[len(prefix):] if text.startswith(prefix) else text


def _limits(limit: int) -> Limits:
    return Limits(max_file_bytes=limit)


async def receive_multipart(request, data_dir: Path, limit: int) -> tuple[Stored, dict[str, str]]:
    """Stream a multipart/form-data body: the part named `file` to disk, short text fields into a dict."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart body without a boundary")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise UploadError(413, f"upload of {declared} bytes is over the {limit} byte limit")

    fields: dict[str, str] = {}
    state = {"name": None, "filename": None, "headers": {}, "field": None, "buf": bytearray()}
    sink: _Sink | None = None
    file_name: list[str] = []
    header_field = bytearray()
    header_value = bytearray()

    def on_part_begin():
        state["headers"] = {}

    def on_header_field(data, start, end):
        header_field.extend(data[start:end])

    def on_header_value(data, start, end):
        header_value.extend(data[start:end])

    def on_header_end():
        state["headers"][bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished():
        nonlocal sink
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["name"] = disp.get(b"name", b"").decode("utf-8", "replace")
        state["buf"] = bytearray()
        if state["name"] == "file":
            if sink is not None:
                raise UploadError(400, "more than one `file` part")
            file_name.append(display_name(disp.get(b"filename", b"").decode("utf-8", "replace")))
            sink = _Sink(data_dir, limit)

    def on_part_data(data, start, end):
        if state["name"] == "file":
            sink.write(data[start:end])
        else:
            state["buf"].extend(data[start:end])
            if len(state["buf"]) > MAX_FIELD_BYTES:
                raise UploadError(413, f"form field {state['name']!r} is over {MAX_FIELD_BYTES} bytes")

    def on_part_end():
        if state["name"] and state["name"] != "file":
            fields[state["name"]] = state["buf"].decode("utf-8", "replace")

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        if sink:
            sink.discard()
        raise
    except Exception as err:  # a malformed body: the parser's own message says where
        if sink:
            sink.discard()
        raise UploadError(400, f"malformed multipart body ({type(err).__name__}: {err})") from None
    if sink is None:
        raise UploadError(400, "multipart field `file` is missing")
    stored = sink.finish(data_dir, file_name[0], _limits(limit))
    return stored, {**fields, "filename": file_name[0]}


def store_local(path: Path, data_dir: Path, limit: int) -> Stored:
    """Copy a file from the media root into the store, through the same hashing, limit and sniffing."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise UploadError(404, f"{display_name(path.name)}: cannot read ({err.strerror or err})") from None
    if size > limit:
        raise UploadError(413, f"{display_name(path.name)}: {size} bytes is over the {limit} byte limit")
    sink = _Sink(data_dir, limit)
    try:
        with open(path, "rb") as f:
            shutil.copyfileobj(f, _Writer(sink), 1 << 20)
    except UploadError:
        sink.discard()
        raise
    except OSError as err:
        sink.discard()
        raise UploadError(404, f"{display_name(path.name)}: cannot read ({err.strerror or err})") from None
    return sink.finish(data_dir, display_name(path.name), _limits(limit))


class _Writer:
    def __init__(self, sink: _Sink):
        self.sink = sink

    def write(self, data: bytes) -> int:
        self.sink.write(data)
        return len(data)


def resolve_under(root: Path, requested: str) -> Path:
    """`requested` (relative to root, or absolute) if it lies inside root after resolving links and '..';
    otherwise refused: a client must not read files the operator did not put under the media root."""
    root = root.resolve()
    p = Path(requested)
    candidate = (p if p.is_absolute() else root / p).resolve()
    if candidate != root and root not in candidate.parents:
        raise UploadError(403, "path is outside the media root")
    if not candidate.is_file():
        raise UploadError(404, "no such file under the media root")
    return candidate
