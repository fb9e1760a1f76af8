"""The product never imports the lab: scanning needs neither the generator side (synthesis) nor training."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "deepscreen"
SCANNER = ["media", "faces", "detectors", "report", "fusion.py", "prepared.py", "scan.py", "verdict.py", "config.py",
           "__init__.py", "service", "batch"]
LAB = ("synthesis", "training")


def _lab_imports(path: Path) -> list[str]:
    """Every import of deepscreen.synthesis / deepscreen.training in a file, at any depth (lazy ones included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            parts = [p for p in mod.split(".") if p]
            if mod.startswith("deepscreen."):
                parts = parts[1:]
            elif not node.level:
                continue  # a third-party package
            if any(n in LAB for n in parts[:1] or [a.name for a in node.names]):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} from {'.' * node.level}{mod}")
        elif isinstance(node, ast.Import):
            found += [f"{path.relative_to(SRC)}:{node.lineno} import {a.name}" for a in node.names
                      if a.name.split(".")[:2] in (["deepscreen", "synthesis"], ["deepscreen", "training"])]
    return found


def test_no_scanner_module_imports_the_lab():
    files = [p for entry in SCANNER for p in ((SRC / entry).rglob("*.py") if (SRC / entry).is_dir()
                                               else [SRC / entry]) if p.exists()]
    assert len(files) > 20
    bad = [hit for f in files for hit in _lab_imports(f)]
    assert bad == [], "scanner modules import the lab:\n" + "\n".join(bad)


def test_the_checker_sees_a_lab_import(tmp_path):
    """The check above must be able to fail: a lazy relative import inside a function is found."""
    fake = SRC / "detectors" / "_layer_probe_tmp.py"
    try:
        fake.write_text("def f():\n    from ..training.metrics import auc\n    from .. import synthesis\n")
        assert len(_lab_imports(fake)) == 2
    finally:
        fake.unlink()


def test_a_scan_loads_no_lab_module(lfw_face_path):
    code = ("import sys\nfrom deepscreen.scan import Scanner\nfrom deepscreen.report import render_html, to_json_line\n"
            "v = Scanner().scan(sys.argv[1])\nrender_html([v]); to_json_line(v)\n"
            "assert v.probability is not None, v.summary\n"
            "print(sorted(m for m in sys.modules if m.startswith(('deepscreen.synthesis', 'deepscreen.training'))))")
    out = subprocess.run([sys.executable, "-c", code, str(lfw_face_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
