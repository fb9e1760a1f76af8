"""Batch throughput: `deepscreen batch` on a generated collection, local and Ray engines, 1 and 2 workers.

  .venv/bin/python benchmarks/bench_batch.py [--photos 2000] [--videos 40] [--work /tmp/bench_batch]
                                            [--engines local,ray] [--workers 1,2] [--profile 200]

The collection: a list of --photos LFW face photos (files read where they lie in ../shared, nothing copied) and
--videos 3 s, 320x240, 25 fps H.264 clips of a face moving over a background, written into --work. Photos and
videos run as two separate batches, so photos/s and video-seconds/s are each measured alone.

For each engine and worker count it prints
- rate: files (or seconds of video) per second over the span from the first scan's start to the last scan's end,
  by the workers' own clocks (results.parquet: scanned_at - elapsed_s .. scanned_at). Start-up (Ray, worker
  processes, model loads) falls outside that span for both engines; everything between scans (Ray's batching and
  transfers, the driver, idle workers) falls inside. This is what a long batch sees;
- efficiency = rate / (workers x the 1-worker rate of that engine);
- busy: the share of that span the workers spent inside scans; median scan time per photo (inside a worker:
  shows whether a difference between engines is overhead or CPU share on a shared machine);
- start-up: until the first row reached the driver; Ray vs local = 1 - Ray's rate / local's (goal <= 15 %);
- peak resident memory of each worker process (the largest worker).
Goal: local >= 20 face photos/s on 2 cores. Then a profile: where one worker's time goes per photo (probe,
hash, decode, face finding, alignment, the CNN, the rest), from timers wrapped around the scan core's stages.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from deepscreen.batch.run import BatchOptions, run_batch
from deepscreen.config import SHARED_DIR, ScanConfig

LFW = SHARED_DIR / "data/faces/lfw"


# -- the collection ------------------------------------------------------------------------------------------------
def make_collection(work: Path, n_photos: int, n_videos: int) -> tuple[Path, Path]:
    work.mkdir(parents=True, exist_ok=True)
    photos = sorted(LFW.glob("*/*.jpg"))
    if len(photos) < n_photos:
        sys.exit(f"only {len(photos)} LFW photos under {LFW}, {n_photos} asked")
    pick = np.linspace(0, len(photos) - 1, n_photos).round().astype(int)  # spread over people, not one letter
    photo_list = work / "photos.txt"
    photo_list.write_text("".join(f"{photos[i]}\n" for i in pick))
    videos = work / "videos"
    videos.mkdir(exist_ok=True)
    for k in range(n_videos):
        path = videos / f"clip{k:03d}.mp4"
        if not path.exists():
            _write_clip(path, np.asarray(Image.open(photos[pick[k * len(pick) // n_videos]]).convert("RGB")))
    return photo_list, videos


def _write_clip(path: Path, face: np.ndarray, seconds: float = 3.0, fps: int = 25) -> None:
    h, w = face.shape[:2]
    y, x = np.mgrid[0:240, 0:320]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.options = {"preset": "veryfast"}
        for i in range(int(seconds * fps)):
            frame = np.stack([np.clip(x // 2 + i, 0, 255), y, np.full_like(x, 128)], axis=2).astype(np.uint8)
            frame[45:45 + h, 8 + 2 * i:8 + 2 * i + w] = face
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


# -- one run -------------------------------------------------------------------------------------------------------
class _MemorySampler(threading.Thread):
    """Peak RSS of each worker process, sampled twice a second from /proc (Linux): the local pool's spawned
    processes, or Ray's scan actors; only descendants of this process (others may run the same code)."""

    def __init__(self, engine: str):
        super().__init__(daemon=True)
        self.marker = b"spawn_main" if engine == "local" else b"_RayScan"
        self.peak: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.5):
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    if self.marker not in (proc / "cmdline").read_bytes() or not _descends(int(proc.name)):
                        continue
                    status = (proc / "status").read_text()
                except OSError:  # gone meanwhile
                    continue
                rss = next((int(line.split()[1]) * 1024 for line in status.splitlines()
                            if line.startswith("VmRSS:")), 0)
                self.peak[int(proc.name)] = max(self.peak.get(int(proc.name), 0), rss)


def _descends(pid: int) -> bool:
    me = os.getpid()
    while pid > 1:
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])  # ppid
        except (OSError, IndexError, ValueError):
            return False
        if pid == me:
            return True
    return False


def measure(engine: str, workers: int, source: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    first: list[float] = []
    sampler = _MemorySampler(engine)
    sampler.start()
    t0 = time.perf_counter()
    code, summary = run_batch(BatchOptions(source, out, engine=engine, workers=workers, progress=False,
                                           config=ScanConfig(keep_crops=False),
                                           on_row=lambda row: first or first.append(time.perf_counter())))
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    rows = [r for r in pq.read_table(out / "results.parquet").to_pylist() if r["scanned_at"] is not None]
    # From the workers' own clocks: the first scan's start to the last scan's end. Start-up is outside this
    # window for both engines alike, and everything between scans (Ray's batching and transfers, the driver,
    # waiting for work) is inside it.
    ends = np.array([r["scanned_at"] for r in rows])
    took = np.array([r["elapsed_s"] for r in rows])
    span = ends.max() - (ends - took).min()
    video_s = sum(r["duration_s"] or 0.0 for r in rows if r["kind"] == "video")
    return {"engine": engine, "workers": workers, "files": len(rows), "errors": summary["errors"], "wall_s": wall,
            "rate": len(rows) / span, "video_s_rate": video_s / span, "busy": took.sum() / (workers * span),
            "scan_ms": 1000 * float(np.median(took)), "first_row_s": first[0] - t0 if first else float("nan"),
            "peak_rss_mb": max(sampler.peak.values(), default=0) / 2**20, "workers_seen": len(sampler.peak)}


# -- profile -------------------------------------------------------------------------------------------------------
def profile(photos: list[str], threads: int = 1) -> dict[str, float]:
    """Milliseconds per photo in each stage of one worker (`threads` threads): the scan core's own per-stage
    timings (Verdict.timings; decode runs in the prefetch thread and is measured there)."""
    import json

    from deepscreen.batch.worker import Worker

    worker = Worker(ScanConfig(keep_crops=False), threads)
    for p in photos[:5]:
        worker.scan(p, None)  # warm caches and lazy initialisation
    spent: dict[str, float] = {}
    t = time.perf_counter()
    for p in photos:
        for stage, ms in json.loads(worker.scan(p, None).get("timings_json") or "{}").items():
            spent[stage] = spent.get(stage, 0.0) + ms
    total = time.perf_counter() - t
    ms = {k: v / len(photos) for k, v in spent.items()}
    ms["rest (hashing, verdict, row)"] = 1000 * total / len(photos) - sum(ms.values())
    ms["total"] = 1000 * total / len(photos)
    return ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--videos", type=int, default=40)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_batch"))
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--profile", type=int, default=200, help="photos in the stage profile (0: none)")
    args = ap.parse_args()
    photo_list, videos = make_collection(args.work, args.photos, args.videos)
    print(f"cores {os.cpu_count()}, load average at start {os.getloadavg()[0]:.2f}; "
          f"{args.photos} photos, {args.videos} videos of 3 s", flush=True)
    results = []
    # Engines interleaved at each worker count, so a change in the machine's load falls on both alike.
    for w in map(int, args.workers.split(",")):
        for engine in args.engines.split(","):
            for what, source in (("photos", photo_list), ("videos", videos)):
                r = measure(engine, w, source, args.work / f"out_{engine}_{w}_{what}")
                r["what"] = what
                results.append(r)
                print(f"  {engine} x{w} {what}: {r['files']} files, {r['rate']:.2f} files/s "
                      f"({r['video_s_rate']:.2f} video-s/s), workers busy {100 * r['busy']:.0f} %, median scan "
                      f"{r['scan_ms']:.0f} ms, first row after {r['first_row_s']:.1f} s, wall {r['wall_s']:.1f} s, "
                      f"worker peak RSS {r['peak_rss_mb']:.0f} MB ({r['workers_seen']} seen), "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
    print_tables(results)
    if args.profile:
        photos = photo_list.read_text().split()[: args.profile]
        for threads in (1, 2):
            ms = profile(photos, threads)
            print(f"\nprofile, one worker with {threads} thread(s), ms per photo over {len(photos)} photos")
            width = max(map(len, ms))
            for k, v in ms.items():
                print(f"  {k.ljust(width)}  {v:7.2f}  {100 * v / ms['total']:5.1f} %")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


def print_tables(results: list[dict]) -> None:
    def get(engine, w, what):
        return next((r for r in results if (r["engine"], r["workers"], r["what"]) == (engine, w, what)), None)

    print("\nengine  workers  photos/s  eff.  video-s/s  eff.  busy (photos)  median scan/photo  start-up  "
          "worker RSS  Ray vs local (photos / videos)")
    for e, w in dict.fromkeys((r["engine"], r["workers"]) for r in results):
        p, v = get(e, w, "photos"), get(e, w, "videos")
        p1, v1 = get(e, 1, "photos"), get(e, 1, "videos")
        if not (p and v):
            continue
        eff_p = p["rate"] / (w * p1["rate"]) if p1 else float("nan")
        eff_v = v["video_s_rate"] / (w * v1["video_s_rate"]) if v1 else float("nan")
        over = ""
        lp, lv = get("local", w, "photos"), get("local", w, "videos")
        if e == "ray" and lp and lv:
            over = (f"{100 * (1 - p['rate'] / lp['rate']):+.1f} % / "
                    f"{100 * (1 - v['video_s_rate'] / lv['video_s_rate']):+.1f} % slower")
        print(f"{e:6}  {w:7}  {p['rate']:8.2f}  {eff_p:4.2f}  {v['video_s_rate']:9.2f}  {eff_v:4.2f}  "
              f"{100 * p['busy']:11.0f} %  {p['scan_ms']:14.0f} ms  {p['first_row_s']:6.1f} s  "
              f"{max(p['peak_rss_mb'], v['peak_rss_mb']):7.0f} MB  {over}")
    print("rates: files (or seconds of video) over the span from the first scan's start to the last scan's end, by "
          "the workers' clocks; busy: share of that span the workers spent inside scans (the rest is overhead and "
          "waiting); start-up: until the first row reached the driver")
    print("goal: local >= 20 photos/s with 2 workers on 2 cores; Ray overhead <= 15 % at equal workers")

if __name__ == "__main__":
    main()
