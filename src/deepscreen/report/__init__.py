"""Front-end renderings of verdicts: a self-contained HTML report and JSON Lines."""

from __future__ import annotations

from pathlib import Path

from deepscreen.report.html import render_html
from deepscreen.report.jsonl import to_json_line
from deepscreen.verdict import Verdict

__all__ = ["render_html", "to_json_line", "write_html"]


def write_html(verdicts: list[Verdict], path: str | Path, title: str = "deepscreen report") -> Path:
    """Render `verdicts` to one self-contained HTML file at `path`; returns the path."""
    path = Path(path)
    path.write_text(render_html(verdicts, title=title), encoding="utf-8")
    return path
