"""Golden outputs of the demo samples: what `scan --json` and `--report` give for each file the README scans.

  .venv/bin/python tests/golden/record.py     # rewrite samples.json and samples.html from the code as it is

Recorded once from the scan core as it stood, so a refactoring that should change nothing is held to that
(tests/test_samples.py::test_outputs_match_the_recording). Re-record only for a change that is meant to move a
verdict, and say which in CHANGELOG.md. Fields that measure the run (elapsed time, stage timings) and the hashes of
test-made files are left out; fields added since the recording are named in ADDED_FIELDS.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
JSON_FILE, HTML_FILE = HERE / "samples.json", HERE / "samples.html"
RUN_FIELDS = ("elapsed_s", "timings", "sha256")  # differ from run to run, or per encoder build
ADDED_FIELDS: tuple[str, ...] = ()  # added to the verdict since the recording (none: re-recorded for voice v1.4)


def verdict_json(verdict) -> dict:
    """The verdict as `scan --json` prints it, less the run-dependent fields, the path reduced to the file name."""
    from deepscreen.report import to_json_line

    d = json.loads(to_json_line(verdict))
    for key in RUN_FIELDS:
        d.pop(key, None)
    d["path"] = Path(d["path"]).name
    return d


def report_html(verdicts) -> str:
    """The HTML report, less what changes per run (when it was made, time taken) and with each embedded picture
    replaced by a hash of it (kept comparable, not kilobytes of base64)."""
    from deepscreen.report import render_html

    html = render_html(sorted(verdicts, key=lambda v: Path(v.path).name))
    html = re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "generated (time)", html)
    html = re.sub(r"<dt>time taken</dt><dd>.*?</dd>", "", html)
    html = re.sub(r'(<h2 title=")[^"]*/', r"\1", html)  # the folder the samples were made in
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+",
                  lambda m: "png:" + hashlib.sha256(m.group(0).encode()).hexdigest()[:16], html)


def scan_samples(out: Path) -> list:
    from deepscreen import Scanner
    from deepscreen.synthesis.samples import make_samples

    scanner = Scanner()
    return [scanner.scan(p) for p in make_samples(out)]


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        verdicts = scan_samples(Path(d))
        recorded = {Path(v.path).name: verdict_json(v) for v in verdicts}
        JSON_FILE.write_text(json.dumps(recorded, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
        HTML_FILE.write_text(report_html(verdicts), encoding="utf-8")
    print(f"wrote {JSON_FILE} and {HTML_FILE}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1] / "src"))
    main()
