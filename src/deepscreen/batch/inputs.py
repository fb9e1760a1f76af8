"""What to screen: a folder (walked recursively), a text file of paths, or a CSV/Parquet manifest.

A manifest has a `path` column and optionally a `label` column (real / fake; an empty cell = unlabelled), which
turns the run into an evaluation. Relative paths in a list or manifest are taken relative to the folder the list
is in, so a collection and its manifest can be moved (or mounted elsewhere on a cluster) together.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

LABELS = ("real", "fake")
MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")


class InputError(ValueError):
    """INPUT cannot be read as a collection; the message says why, in one line."""


@dataclass(frozen=True)
class Item:
    path: str
    truth: str | None = None  # "real", "fake" or None (unlabelled)


def read_items(source: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[Item]:
    """Items in a stable order (folder: sorted walk; list/manifest: as written), each path once, absolute.
    Files under `exclude` are left out: the output folder, when it lies inside the collection, is not screened."""
    source = Path(source)
    if source.is_dir():
        items = [Item(str(p)) for p in _expand([source])]
    elif not source.is_file():
        raise InputError(f"{source}: no such file or folder")
    elif source.suffix.lower() == ".csv":
        items = _manifest_rows(source, _read_csv(source))
    elif source.suffix.lower() in (".parquet", ".pq"):
        items = _manifest_rows(source, _read_parquet(source))
    else:
        items = [Item(str(p)) for p in _expand(_path_list(source))]
    # Absolute paths: the same file keeps one key whatever folder a resumed run starts in, and Ray actors
    # (whose working folder is not the driver's) open what the driver meant.
    items = [Item(os.path.abspath(i.path), i.truth) for i in items]
    if exclude is not None:
        inside = os.path.join(os.path.abspath(exclude), "")
        items = [i for i in items if not i.path.startswith(inside)]
    return _unique(items)


def _expand(paths):
    from ..scan import expand_paths  # the scan command's own walk: same files, same order, same hidden-file rule

    return expand_paths(paths)


def _path_list(source: Path) -> list[Path]:
    """One path per line; blank lines and lines starting with # are skipped."""
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{source}: not a folder, a text file of paths, or a .csv/.parquet manifest") from None
    base = source.parent
    return [_resolve(base, line.strip()) for line in text.splitlines() if line.strip()
            and not line.lstrip().startswith("#")]


def _read_csv(source: Path) -> list[dict]:
    with open(source, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [c.strip().lower() for c in reader.fieldnames or []]
        if "path" not in fields:
            raise InputError(f"{source}: a manifest needs a 'path' column (found: {', '.join(fields) or 'none'})")
        return [{k.strip().lower(): v for k, v in row.items() if k is not None} for row in reader]


def _read_parquet(source: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(source)
    except Exception as err:  # noqa: BLE001  (pyarrow raises several types for a damaged file)
        raise InputError(f"{source}: unreadable Parquet manifest ({err})") from None
    table = table.rename_columns([c.strip().lower() for c in table.column_names])
    if "path" not in table.column_names:
        raise InputError(f"{source}: a manifest needs a 'path' column (found: {', '.join(table.column_names)})")
    keep = [c for c in ("path", "label") if c in table.column_names]
    return table.select(keep).to_pylist()


def _manifest_rows(source: Path, rows: list[dict]) -> list[Item]:
    base = source.parent
    items = []
    for n, row in enumerate(rows, start=2):  # line 1 is the header: errors name the line a person sees
        path = str(row.get("path") or "").strip()
        if not path:
            raise InputError(f"{source}: row {n}: empty path")
        truth = _label(row.get("label"), source, n)
        # A folder in a manifest stands for every file under it, all with that row's label.
        items += [Item(str(p), truth) for p in _expand([_resolve(base, path)])]
    return items


def _label(value, source: Path, n: int) -> str | None:
    text = "" if value is None else str(value).strip().lower()
    if text in ("", "nan", "none"):
        return None
    if text not in LABELS:
        raise InputError(f"{source}: row {n}: label {value!r}: use real or fake (or leave it empty)")
    return text


def _resolve(base: Path, path: str) -> Path:
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else base / p


def _unique(items: list[Item]) -> list[Item]:
    """Each file once (the first mention wins); two mentions with different labels are a mistake in the manifest."""
    seen: dict[str, Item] = {}
    for item in items:
        first = seen.setdefault(item.path, item)
        if first.truth != item.truth and first is not item:
            raise InputError(f"{item.path}: listed twice, once as {first.truth or 'unlabelled'} and once as "
                             f"{item.truth or 'unlabelled'}")
    return list(seen.values())
