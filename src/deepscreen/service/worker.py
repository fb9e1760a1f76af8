"""A scan worker: a process that loads the models once, then takes jobs from the table until its server goes.

Started by the server's supervisor as `python -m deepscreen.service.worker`, with the settings in the environment
(so secrets never show in `ps`). It dies with its server (PR_SET_PDEATHSIG), so a kill -9 of the server leaves no
worker writing to the store; the job it held is re-queued by the next server start (jobs.recover).
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from . import jobs, policy
from .settings import ServiceSettings
from .store import make_engine
from .uploads import media_path

log = logging.getLogger("deepscreen.service.worker")
SETTINGS_ENV = "DEEPSCREEN_SERVICE_SETTINGS_JSON"
IDLE_POLL_S = 0.05  # an empty queue is polled this often: the floor of time to verdict when idle


def die_with_parent(parent_pid: int) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except OSError:
        pass  # not Linux: the parent-pid check in the loop still stops us, a little later
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(0)


def models_key(scanner) -> str:
    """Digest of every model's name, version, weights and arithmetic: a change re-scans stored media."""
    models = sorted((m.name, m.version, m.sha256, m.precision, m.runtime) for m in scanner.models())
    return hashlib.sha256(json.dumps(models).encode()).hexdigest()


def ready_file(data_dir: Path, server_id: str, worker: int) -> Path:
    return data_dir / "run" / f"{server_id}-{worker}.ready"


class Worker:
    def __init__(self, settings: ServiceSettings, server_id: str, number: int):
        from deepscreen.config import Sampling, ScanConfig, Thresholds
        from deepscreen.scan import Scanner

        self.settings = settings
        self.server_id = server_id
        self.number = number
        self.engine = make_engine(settings.url)
        self.thresholds = Thresholds(settings.suspicious, settings.manipulated)
        self.scanner = Scanner(ScanConfig(sampling=Sampling(frames=settings.frames, all_frames=settings.all_frames),
                                          thresholds=self.thresholds))
        self.models_key = models_key(self.scanner)
        for sub in ("reports", "thumbs", "run"):
            (settings.data_dir / sub).mkdir(parents=True, exist_ok=True)

    def run(self, parent_pid: int) -> None:
        path = ready_file(self.settings.data_dir, self.server_id, self.number)
        path.write_text(self.models_key)
        log.info("worker %d ready (models %s)", self.number, self.models_key[:12])
        while os.getppid() == parent_pid:
            job = jobs.claim(self.engine, self.server_id, self.number)
            if job is None:
                time.sleep(IDLE_POLL_S)
                continue
            try:
                self.process(job)
            except Exception:  # e.g. the store briefly unreachable: put the job back rather than leave it running
                log.exception("job %s failed; re-queuing it", job["id"])
                try:
                    jobs.requeue(self.engine, jobs.scans.c.claim == job["claim"], self.settings.job_max_attempts)
                except Exception:
                    log.exception("could not re-queue job %s; the next start will", job["id"])
                time.sleep(1.0)

    def process(self, job: dict) -> None:
        cached = jobs.cached_result(self.engine, job["sha256"], self.models_key)
        if cached is not None:
            verdict = json.loads(cached["verdict_json"])
            verdict["path"] = job["filename"]
            jobs.finish(self.engine, job["id"], job["claim"], status=cached["status"], route=cached["route"],
                        label=cached["label"], probability=cached["probability"], kind=cached["kind"],
                        verdict_json=json.dumps(verdict, separators=(",", ":")), reason=cached["reason"],
                        report=cached["report"], thumb=cached["thumb"], cached_from=cached["id"],
                        models_key=self.models_key, scan_seconds=0.0,
                        review_state=policy.review_state(cached["route"]))
            return
        from deepscreen.report import render_html, to_json_line

        stored = media_path(self.settings.data_dir, job["sha256"])
        verdict = self.scanner.scan(stored)
        _rename(verdict, str(stored), job["filename"])
        route = policy.route(verdict.label, self.settings.inconclusive_route)
        report = f"{job['id']}.html"
        _write_atomic(self.settings.data_dir / "reports" / report,
                      render_html([verdict], title=f"deepscreen: {job['filename']}").encode("utf-8"))
        thumb = _thumbnail(verdict, stored, self.settings.data_dir / "thumbs" / f"{job['id']}.jpg")
        ok = jobs.finish(self.engine, job["id"], job["claim"], status="error" if verdict.label == "error" else "done",
                         route=route, label=verdict.label, probability=verdict.probability, kind=verdict.kind,
                         verdict_json=to_json_line(verdict), reason=verdict.error, report=report, thumb=thumb,
                         models_key=self.models_key, scan_seconds=verdict.elapsed_s,
                         review_state=policy.review_state(route))
        if not ok:
            log.warning("job %s was re-queued while being scanned; result dropped", job["id"])


def _rename(verdict, stored: str, name: str) -> None:
    """Show the client's file name, never the store's path, in the verdict, its summary and its error."""
    from deepscreen.media.errors import label

    verdict.path = name
    for old in (stored, label(Path(stored)), Path(stored).name):
        if verdict.error:
            verdict.error = verdict.error.replace(old, name)
        verdict.summary = verdict.summary.replace(old, name)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _thumbnail(verdict, stored: Path, out: Path) -> str | None:
    """A small JPEG for the review queue: the most suspicious face's crop, else the image itself."""
    try:
        from PIL import Image

        faces = [f for f in verdict.faces if f.peak_crop is not None]
        if faces:
            im = Image.fromarray(max(faces, key=lambda f: f.probability or 0.0).peak_crop)
        elif verdict.kind == "image":
            im = Image.open(stored)
            im.draft("RGB", (256, 256))  # JPEG: decode at reduced size; a huge photo never fully decodes here
        else:
            return None
        im = im.convert("RGB")
        im.thumbnail((128, 128))
        buf = out.with_suffix(".tmp")
        im.save(buf, "JPEG", quality=85)
        os.replace(buf, out)
        return out.name
    except Exception:  # a thumbnail is a convenience; its failure must not fail the scan
        log.exception("no thumbnail for %s", stored)
        return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-id", required=True)
    ap.add_argument("--worker", type=int, required=True)
    ap.add_argument("--parent", type=int, required=True)
    args = ap.parse_args(argv)
    die_with_parent(args.parent)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # the job in hand is re-queued by the next start
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = ServiceSettings.from_json(os.environ[SETTINGS_ENV])
    Worker(settings, args.server_id, args.worker).run(args.parent)


if __name__ == "__main__":
    main()
