"""Batch throughput: `deepscreen batch` on a generated collection, local and Ray engines, 1 and 2 workers.

  .venv/bin/python benchmarks/bench_batch.py [--photos 2000] [--videos 20] [--work /tmp/bench_batch]
                                            [--engines local,ray] [--workers 1,2] [--profile 200]

The collection: a list of --photos LFW face photos (files read where they lie in ../shared, nothing copied) and
--videos 3 s, 320x240, 25 fps H.264 clips of a face moving over a background, written into --work. Photos and
videos run as two separate batches, so photos/s and video-seconds/s are each measured alone.

For each engine and worker count it prints
- steady rate: files (or video-seconds) per second between the row that ends the warm-up (every worker has loaded
  its models and scanned a few files) and the last row; this is what a long batch sees;
- wall: the whole command, start-up (worker or Ray start, model loads) and compaction included;
- efficiency = steady rate / (workers x the 1-worker rate of that engine);
- Ray overhead = 1 - Ray's steady rate / local's at the same worker count (goal <= 15 %);
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
    times, seconds = [], []

    def on_row(row):
        times.append(time.perf_counter())
        seconds.append(row.get("duration_s") or 0.0 if row.get("kind") == "video" else 0.0)

    sampler = _MemorySampler(engine)
    sampler.start()
    t0 = time.perf_counter()
    code, summary = run_batch(BatchOptions(source, out, engine=engine, workers=workers, progress=False,
                                           config=ScanConfig(keep_crops=False), on_row=on_row))
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    n = len(times)
    # Rows before the steady state: every worker loaded and busy. Ray hands rows back a block at a time (up to 8),
    # so on a short batch its "steady" window is coarse; on the full collection a block is < 1 % of it.
    warm = min(max(3 * workers, n // 10), n - 2)
    span = times[-1] - times[warm] if n >= 3 and times[-1] > times[warm] else float("nan")
    return {"engine": engine, "workers": workers, "files": n, "errors": summary["errors"], "wall_s": wall,
            "video_seconds": sum(seconds),
            "rate": (n - 1 - warm) / span, "video_s_rate": sum(seconds[warm + 1:]) / span,
            "first_row_s": times[0] - t0, "peak_rss_mb": max(sampler.peak.values(), default=0) / 2**20,
            "workers_seen": len(sampler.peak)}


# -- profile -------------------------------------------------------------------------------------------------------
def profile(photos: list[str], threads: int = 1) -> dict[str, float]:
    """Milliseconds per photo in each stage of one worker (`threads` threads), from timers around the scan core's
    stages (decode runs in the prefetch thread: its time is measured there)."""
    from deepscreen.batch.worker import Worker
    from deepscreen.faces.detect import FaceAnalyzer

    scan_mod = sys.modules["deepscreen.scan"]
    worker = Worker(ScanConfig(keep_crops=False), threads)
    spent: dict[str, float] = {}
    lock = threading.Lock()

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                with lock:
                    spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    def timed_iter(name, fn):
        def wrapper(*a, **kw):
            it = fn(*a, **kw)
            while True:
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    with lock:
                        spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
                yield item
        return wrapper

    patches = {(scan_mod, "probe"): timed("probe (sniff, headers)", scan_mod.probe),
               (scan_mod, "file_sha256"): timed("sha256", scan_mod.file_sha256),
               (scan_mod, "iter_frames"): timed_iter("decode", scan_mod.iter_frames),
               (scan_mod, "align_face"): timed("align", scan_mod.align_face),
               (scan_mod, "_score"): timed("CNN (face + mirror)", scan_mod._score),
               (FaceAnalyzer, "__call__"): timed("face finding (MediaPipe)", FaceAnalyzer.__call__)}
    saved = {k: getattr(*k) for k in patches}
    for (obj, name), fn in patches.items():
        setattr(obj, name, fn)
    try:
        for p in photos[:5]:
            worker.scan(p, None)  # warm caches and lazy initialisation
        spent.clear()
        t = time.perf_counter()
        for p in photos:
            worker.scan(p, None)
        total = time.perf_counter() - t
    finally:
        for (obj, name), fn in saved.items():
            setattr(obj, name, fn)
    ms = {k: 1000 * v / len(photos) for k, v in spent.items()}
    ms["rest (fusion, verdict, row)"] = 1000 * total / len(photos) - sum(ms.values())
    ms["total"] = 1000 * total / len(photos)
    return ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_batch"))
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--profile", type=int, default=200, help="photos in the stage profile (0: none)")
    args = ap.parse_args()
    photo_list, videos = make_collection(args.work, args.photos, args.videos)
    one = args.work / "one_photo.txt"
    one.write_text(photo_list.read_text().split("\n", 1)[0] + "\n")
    print(f"cores {os.cpu_count()}, load average at start {os.getloadavg()[0]:.2f}; "
          f"{args.photos} photos, {args.videos} videos of 3 s", flush=True)
    results = []
    # Engines interleaved at each worker count, so a change in the machine's load falls on both alike.
    for w in map(int, args.workers.split(",")):
        for engine in args.engines.split(","):
            for what, source in (("start-up", one), ("photos", photo_list), ("videos", videos)):
                r = measure(engine, w, source, args.work / f"out_{engine}_{w}_{what}")
                r["what"] = what
                results.append(r)
                print(f"  {engine} x{w} {what}: {r['files']} files, wall {r['wall_s']:.1f} s, steady "
                      f"{r['rate']:.2f} files/s ({r['video_s_rate']:.2f} video-s/s) as rows reached the driver, "
                      f"first row after {r['first_row_s']:.1f} s, worker peak RSS {r['peak_rss_mb']:.0f} MB "
                      f"({r['workers_seen']} workers seen), load {os.getloadavg()[0]:.2f}", flush=True)
    print_tables(results, args.videos)
    if args.profile:
        photos = photo_list.read_text().split()[: args.profile]
        for threads in (1, 2):
            ms = profile(photos, threads)
            print(f"\nprofile, one worker with {threads} thread(s), ms per photo over {len(photos)} photos")
            width = max(map(len, ms))
            for k, v in ms.items():
                print(f"  {k.ljust(width)}  {v:7.2f}  {100 * v / ms['total']:5.1f} %")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


def print_tables(results: list[dict], n_videos: int) -> None:
    """Rates are marginal: (files - 1) / (wall - wall of a one-photo batch) with the same engine and workers, so
    start-up is left out the same way for both engines (Ray hands rows back a block at a time, which makes the
    driver-side steady rate coarse on 20 videos)."""
    def get(engine, w, what):
        return next((r for r in results if (r["engine"], r["workers"], r["what"]) == (engine, w, what)), None)

    def rates(engine, w):
        start, p, v = get(engine, w, "start-up"), get(engine, w, "photos"), get(engine, w, "videos")
        if not (start and p and v):
            return None
        clip_s = v["video_seconds"] / max(v["files"], 1)
        return {"photos": (p["files"] - 1) / (p["wall_s"] - start["wall_s"]),
                "video_s": (v["video_seconds"] - clip_s) / (v["wall_s"] - start["wall_s"]),
                "start": start["wall_s"], "rss": max(p["peak_rss_mb"], v["peak_rss_mb"])}

    print("\nengine  workers  photos/s  eff.  video-s/s  eff.  start-up  worker RSS  Ray overhead (photos / videos)")
    for e, w in dict.fromkeys((r["engine"], r["workers"]) for r in results):
        r, one, loc = rates(e, w), rates(e, 1), rates("local", w)
        if r is None:
            continue
        eff_p = r["photos"] / (w * one["photos"]) if one else float("nan")
        eff_v = r["video_s"] / (w * one["video_s"]) if one else float("nan")
        over = ""
        if e == "ray" and loc:
            over_p, over_v = 1 - r["photos"] / loc["photos"], 1 - r["video_s"] / loc["video_s"]
            over = f"{100 * over_p:+.1f} % / {100 * over_v:+.1f} %"
        print(f"{e:6}  {w:7}  {r['photos']:8.2f}  {eff_p:4.2f}  {r['video_s']:9.2f}  {eff_v:4.2f}  "
              f"{r['start']:6.1f} s  {r['rss']:7.0f} MB  {over}")
    print("goal: local >= 20 photos/s with 2 workers on 2 cores; Ray overhead <= 15 % at equal workers")

if __name__ == "__main__":
    main()
