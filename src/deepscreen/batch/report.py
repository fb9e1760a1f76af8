"""What a finished batch says: summary.json, the table printed at the end and, for a labelled manifest, the
evaluation with a ROC curve and a reliability diagram (PNG).

Counts cover the whole collection (files done by earlier, interrupted runs included); speeds cover only what this
run scanned, over the time it spent scanning (start-up and compaction excluded, and stated separately).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import Thresholds
from . import metrics

SUMMARY = "summary.json"
ROC_PNG = "roc.png"
RELIABILITY_PNG = "reliability.png"
LABELS = ("authentic", "suspicious", "manipulated", "inconclusive", "error")


def summarise(rows: list[dict], run: dict, thresholds: Thresholds) -> dict:
    errors = sum(r["label"] == "error" for r in rows)
    videos = [r for r in rows if r["kind"] == "video"]
    summary = {
        "files": len(rows),
        "errors": errors,
        "flagged": sum(bool(r["flagged"]) for r in rows),
        "by_label": {k: v for k in LABELS if (v := sum(r["label"] == k for r in rows))},
        "by_kind": dict(sorted(Counter(r["kind"] for r in rows).items())),
        "by_truth": dict(sorted(Counter(r["truth"] or "unlabelled" for r in rows).items())),
        "video_seconds": round(sum(r["duration_s"] or 0.0 for r in videos), 2),
        "model_versions": sorted({r["model_versions"] for r in rows if r["model_versions"]}),
        "setup_keys": sorted({r["setup_key"] for r in rows if r["setup_key"]}),
        "thresholds": {"suspicious": thresholds.suspicious, "manipulated": thresholds.manipulated},
        "run": run,
        "evaluation": evaluate(rows) if any(r["truth"] for r in rows) else None,
    }
    return _finite(summary)


class Tally:
    """Running counts of what this run scanned (a million rows are not kept in memory to count them)."""

    def __init__(self):
        self.files = self.errors = self.photos = 0
        self.video_s = 0.0

    def add(self, row: dict) -> None:
        self.files += 1
        self.errors += row.get("label") == "error"
        self.photos += row.get("kind") == "image"
        if row.get("kind") == "video":
            self.video_s += row.get("duration_s") or 0.0


def run_stats(tally: Tally, skipped: int, scan_s: float, total_s: float, engine: str, workers: int,
              threads: int) -> dict:
    """Speeds of this run: files, face photos and seconds of video per second of scanning."""
    per_s = (lambda n: n / scan_s) if scan_s > 0 else (lambda n: None)
    return {
        "engine": engine, "workers": workers, "threads_per_worker": threads,
        "scanned": tally.files, "skipped_done": skipped, "errors": tally.errors,
        "scan_s": round(scan_s, 3), "total_s": round(total_s, 3),
        "files_per_s": _r(per_s(tally.files)), "photos_per_s": _r(per_s(tally.photos)),
        "video_seconds": round(tally.video_s, 2), "video_seconds_per_s": _r(per_s(tally.video_s)),
    }


def evaluate(rows: list[dict]) -> dict:
    """Metrics over the labelled files. Unreadable files are left out (counted under errors). Files the
    detectors abstained on (no face, no speech) have no score: they are left out of AUC, EER and log-loss, but
    count in the shares below as what they are to a user: not flagged."""
    labelled = [r for r in rows if r["truth"] and r["label"] != "error"]
    real = [r for r in labelled if r["truth"] == "real"]
    fake = [r for r in labelled if r["truth"] == "fake"]
    scored = [r for r in labelled if r["probability"] is not None]
    y = np.array([r["truth"] == "fake" for r in scored], bool)
    p = np.array([r["probability"] for r in scored], float)
    out = {
        "real": len(real), "fake": len(fake),
        "errors": sum(1 for r in rows if r["truth"] and r["label"] == "error"),
        "abstained": len(labelled) - len(scored),
        "real_flagged": _share(real), "fakes_caught": _share(fake),
        "auc": None, "eer": None, "eer_threshold": None, "log_loss": None, "ece": None,
        "reliability": metrics.reliability(y, p) if len(scored) else [],
    }
    if len(scored):
        out["log_loss"] = metrics.log_loss(y, p)
        out["ece"] = metrics.ece(y, p)
    if y.any() and not y.all():
        out["auc"] = metrics.auc(y, p)
        out["eer"], out["eer_threshold"] = metrics.eer(y, p)
    return out


def _share(rows: list[dict]) -> float | None:
    return sum(bool(r["flagged"]) for r in rows) / len(rows) if rows else None


def write(out: Path, summary: dict, rows: list[dict]) -> None:
    from .store import _atomic_bytes

    ev = summary["evaluation"]
    if ev:
        labelled = [r for r in rows if r["truth"] and r["probability"] is not None and r["label"] != "error"]
        y = np.array([r["truth"] == "fake" for r in labelled], bool)
        p = np.array([r["probability"] for r in labelled], float)
        if y.any() and not y.all():
            _roc_png(out / ROC_PNG, y, p, ev["auc"], ev["eer"])
            ev["roc_png"] = ROC_PNG
        if len(p):
            _reliability_png(out / RELIABILITY_PNG, ev["reliability"], ev["ece"])
            ev["reliability_png"] = RELIABILITY_PNG
    _atomic_bytes((json.dumps(summary, indent=2) + "\n").encode(), out / SUMMARY)


def _figure(w: float = 4.5, h: float = 4.5):
    # The object API with an Agg canvas: no pyplot, no global backend switch in a process that may have its own.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _roc_png(path: Path, y, p, auc: float, eer: float) -> None:
    fpr, tpr, _ = metrics.roc_curve(y, p)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, drawstyle="steps-post", label=f"AUC {auc:.3f}, EER {100 * eer:.1f} %")
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    ax.set(xlabel="share of real files flagged (FPR)", ylabel="share of fakes caught (TPR)",
           title=f"ROC ({int((~y).sum())} real, {int(y.sum())} fake)", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def _reliability_png(path: Path, bins: list[dict], ece: float) -> None:
    fig = _figure(4.5, 5.5)
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    full = [b for b in bins if b["count"]]
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1, label="perfectly calibrated")
    ax.plot([b["mean_probability"] for b in full], [b["share_fake"] for b in full], "o-",
            label=f"observed (ECE {ece:.3f})")
    ax.set(ylabel="share of fakes", title="Reliability", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    hist.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["count"] for b in bins], width=0.09, color="grey")
    hist.set(xlabel="predicted probability of manipulation", ylabel="files")
    fig.tight_layout()
    fig.savefig(path)


def _workers(run: dict) -> str:
    if stages := run.get("ray_stages"):
        return (f"ray engine, prepare {stages['prepare_workers']} x {stages['prepare_cpus']} CPU(s), "
                f"judge {stages['judge_workers']} x {stages['judge_cpus']} CPU(s)")
    return f"{run['engine']} engine, {run['workers']} worker(s) x {run['threads_per_worker']} thread(s)"


def print_table(summary: dict, console) -> None:
    from rich.table import Table

    run = summary["run"]
    t = Table(title="deepscreen batch", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("files", f"{summary['files']}  ({', '.join(f'{k} {v}' for k, v in summary['by_kind'].items())})")
    t.add_row("verdicts", ", ".join(f"{k} {v}" for k, v in summary["by_label"].items()) or "-")
    t.add_row("errors", str(summary["errors"]) + ("  (see errors.jsonl)" if summary["errors"] else ""))
    if summary["evaluation"]:
        t.add_row("labels", ", ".join(f"{k} {v}" for k, v in summary["by_truth"].items()))
    t.add_row("this run", f"{run['scanned']} scanned, {run['skipped_done']} already done; {_workers(run)}")
    if run["scanned"]:
        t.add_row("speed", f"{run['files_per_s']:.2f} files/s, {run['photos_per_s']:.2f} photos/s, "
                           f"{run['video_seconds_per_s']:.2f} video-seconds/s  ({run['scan_s']:.1f} s scanning, "
                           f"{run['total_s']:.1f} s in all)")
    ev = summary["evaluation"]
    if ev:
        t.add_row("real flagged", _pct(ev["real_flagged"]) + f"  of {ev['real']} real")
        t.add_row("fakes caught", _pct(ev["fakes_caught"]) + f"  of {ev['fake']} fake")
        t.add_row("AUC / EER", f"{_num(ev['auc'], '.4f')} / {_pct(ev['eer'], 1)}")
        t.add_row("log-loss / ECE", f"{_num(ev['log_loss'], '.4f')} / {_num(ev['ece'], '.4f')}")
        if ev["abstained"] or ev["errors"]:
            t.add_row("not scored", f"{ev['abstained']} abstained (no face / speech), {ev['errors']} errors")
    console.print(t)


def _pct(x, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f} %"


def _num(x, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def _r(x):
    return None if x is None else round(x, 3)


def _finite(obj):
    """summary.json is strict JSON: NaN (e.g. AUC of one class) becomes null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj

