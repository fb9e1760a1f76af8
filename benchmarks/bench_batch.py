"""Batch throughput: `deepscreen batch` on a generated collection, local and Ray engines, 1 and 2 workers.

  .venv/bin/python benchmarks/bench_batch.py [--photos 2000] [--videos 20] [--work /tmp/bench_batch]
                                            [--engines local,ray,ray1] [--workers 1,2] [--profile 200]

The collection: a list of --photos LFW face photos (files read where they lie in ../shared, nothing copied) and
--videos 3 s, 320x240, 25 fps H.264 clips of a face moving over a background, written into --work. Photos and
videos run as two separate batches, so photos/s and video-seconds/s are each measured alone.

Workers: the local engine's pool processes, each running whole scans; for Ray, the actors of *each* of its two
stages (prepare: decode, faces, speech; judge: detectors, verdict), so Ray x2 runs 2 + 2 actors; `ray1` is Ray
in one stage (`--ray-judge-workers 0`, `--engine ray`'s default), each actor preparing and judging its files as
a local worker does, so ray1 x2 runs 2 actors. Each worker or actor gets cores / workers threads (the defaults
of `deepscreen batch`).

For each engine and worker count it prints
- rate: files (or seconds of video) per second over the span from the first scan's start to the last scan's end,
  by the workers' own clocks (results.parquet: scanned_at - elapsed_s .. scanned_at; for Ray, scanned_at is when
  the judge stage finished the file and elapsed_s the time both stages spent on it). Start-up (Ray, worker
  processes, model loads) falls outside that span for both engines; everything between scans (Ray's batching and
  transfers between stages, the driver, idle workers) falls inside. This is what a long batch sees;
- efficiency = rate / (workers x the 1-worker rate of that engine);
- Ray vs local = 1 - Ray's rate / local's at the same worker count (goal <= 15 %);
- busy: the share of that span the workers (Ray: the actors of both stages) spent inside scans;
- start-up: until the first row reached the driver;
- peak resident memory per worker process (the largest one; Ray: per stage);
- where the time of a file goes, from the per-stage timings each verdict carries (Verdict.timings, ms): the
  prepare steps (decode, faces, speech) and the judge steps (face_cnn, voice, fusion); provenance is split over
  both and shown apart. Decoding runs ahead in a thread of its own, so it overlaps face finding.
Goal: local >= 20 face photos/s on 2 cores. Then a profile: where one worker's time goes per photo, from the
same per-stage timings.
"""

from __future__ import annotations

import argparse
import json
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
# What names a worker process in its command line: the local pool's spawned processes, Ray's stage actors.
WORKER_MARKERS = {"local": {"worker": b"spawn_main"}, "ray": {"prepare": b"PrepareStage", "judge": b"JudgeStage"},
                  "ray1": {"scan": b"ScanStage"}}
# Benchmark names beside the engines, by worker count: ray is Ray's two stages of w actors each; ray1 is Ray in one
# stage (each actor prepares and judges: `deepscreen batch --engine ray`'s default).
ENGINE_OPTIONS = {"local": lambda w: {"engine": "local"}, "ray": lambda w: {"engine": "ray", "ray_judge_workers": w},
                  "ray1": lambda w: {"engine": "ray", "ray_judge_workers": 0}}
PREPARE_STEPS, JUDGE_STEPS = ("decode", "faces", "speech"), ("face_cnn", "voice", "fusion")


class _MemorySampler(threading.Thread):
    """Peak RSS of each worker process, sampled twice a second from /proc (Linux), by kind (WORKER_MARKERS); only
    descendants of this process (others may run the same code)."""

    def __init__(self, engine: str):
        super().__init__(daemon=True)
        self.markers = WORKER_MARKERS[engine]
        self.peak: dict[tuple[str, int], int] = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.5):
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                    kind = next((k for k, m in self.markers.items() if m in cmdline), None)
                    if kind is None or not _descends(int(proc.name)):
                        continue
                    status = (proc / "status").read_text()
                except OSError:  # gone meanwhile
                    continue
                rss = next((int(line.split()[1]) * 1024 for line in status.splitlines()
                            if line.startswith("VmRSS:")), 0)
                key = (kind, int(proc.name))
                self.peak[key] = max(self.peak.get(key, 0), rss)

    def largest_mb(self) -> dict[str, float]:
        return {kind: max((v for (k, _), v in self.peak.items() if k == kind), default=0) / 2**20
                for kind in self.markers}


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
    code, summary = run_batch(BatchOptions(source, out, **ENGINE_OPTIONS[engine](workers), workers=workers,
                                           progress=False, config=ScanConfig(keep_crops=False),
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
    processes = workers * len(WORKER_MARKERS[engine])
    return {"engine": engine, "workers": workers, "files": len(rows), "errors": summary["errors"], "wall_s": wall,
            "rate": len(rows) / span, "video_s_rate": video_s / span, "busy": took.sum() / (processes * span),
            "scan_ms": 1000 * float(np.median(took)), "first_row_s": first[0] - t0 if first else float("nan"),
            "rss_mb": sampler.largest_mb(), "stages_ms": stage_split(rows)}


def stage_split(rows: list[dict]) -> dict[str, float]:
    """Mean milliseconds per file in each step the verdicts timed, and their sums for the two stages."""
    timings = [json.loads(r["timings_json"] or "{}") for r in rows if r["label"] != "error"]
    steps = {k: float(np.mean([t.get(k, 0.0) for t in timings])) if timings else 0.0
             for k in (*PREPARE_STEPS, *JUDGE_STEPS, "provenance")}
    return {**steps, "prepare": sum(steps[k] for k in PREPARE_STEPS), "judge": sum(steps[k] for k in JUDGE_STEPS)}


# -- profile -------------------------------------------------------------------------------------------------------
def profile(photos: list[str], threads: int = 1) -> dict[str, float]:
    """Milliseconds per photo in each stage of one worker (`threads` threads): the scan core's own per-stage
    timings (Verdict.timings; decode runs in the prefetch thread and is measured there)."""
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
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_batch"))
    ap.add_argument("--engines", default="local,ray,ray1")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--profile", type=int, default=200, help="photos in the stage profile (0: none)")
    ap.add_argument("--tables-only", action="store_true", help="print the tables of the last run in --work")
    args = ap.parse_args()
    if args.tables_only:
        return print_tables(json.loads((args.work / "results.json").read_text()))
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
                rss = ", ".join(f"{k} {v:.0f} MB" for k, v in r["rss_mb"].items())
                print(f"  {engine} x{w} {what}: {r['files']} files, {r['rate']:.2f} files/s "
                      f"({r['video_s_rate']:.2f} video-s/s), workers busy {100 * r['busy']:.0f} %, median scan "
                      f"{r['scan_ms']:.0f} ms, first row after {r['first_row_s']:.1f} s, wall {r['wall_s']:.1f} s, "
                      f"peak RSS {rss}, load {os.getloadavg()[0]:.2f}", flush=True)
    (args.work / "results.json").write_text(json.dumps(results, indent=1))  # --tables-only prints them again
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

    print("\n| engine | workers | photos/s | eff. | video-s/s | eff. | Ray overhead vs local, equal workers (photos / "
          "videos) | same, equal processes | busy (photos) | start-up | peak RSS per worker |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for e, w in dict.fromkeys((r["engine"], r["workers"]) for r in results):
        p, v = get(e, w, "photos"), get(e, w, "videos")
        p1, v1 = get(e, 1, "photos"), get(e, 1, "videos")
        if not (p and v):
            continue
        eff_p = f"{p['rate'] / (w * p1['rate']):.2f}" if p1 else "-"  # no 1-worker run of this engine
        eff_v = f"{v['video_s_rate'] / (w * v1['video_s_rate']):.2f}" if v1 else "-"
        # Positive: Ray slower. Ray x w runs 2w processes (w per stage): compared with local x w and x 2w; ray1
        # runs w, so its equal-process column is the equal-worker one and is left empty.
        over = [f"{100 * (1 - p['rate'] / lp['rate']):+.0f} % / "
                f"{100 * (1 - v['video_s_rate'] / lv['video_s_rate']):+.0f} %"
                if e != "local" and (lp := get("local", n, "photos")) and (lv := get("local", n, "videos")) else "-"
                for n in (w, 2 * w if e == "ray" else 0)]
        rss = ", ".join(f"{k} {max(p['rss_mb'][k], v['rss_mb'][k]):.0f} MB" for k in p["rss_mb"])
        print(f"| {e} | {w}{' + ' + str(w) if e == 'ray' else ''} | {p['rate']:.1f} | {eff_p} | "
              f"{v['video_s_rate']:.1f} | {eff_v} | {over[0]} | {over[1]} | {100 * p['busy']:.0f} % | "
              f"{p['first_row_s']:.1f} s | {rss} |")
    print("\nwhere a file's time goes (mean ms per file, from the verdicts' per-stage timings):\n")
    print("| engine | workers | files | prepare (decode / faces / speech) | judge (CNN / voice / fusion) | provenance "
          "| prepare share |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        ms = r["stages_ms"]
        share = ms["prepare"] / (ms["prepare"] + ms["judge"]) if ms["prepare"] + ms["judge"] else float("nan")
        print(f"| {r['engine']} | {r['workers']} | {r['what']} | {ms['prepare']:.1f} ({ms['decode']:.1f} / "
              f"{ms['faces']:.1f} / {ms['speech']:.1f}) | {ms['judge']:.1f} ({ms['face_cnn']:.1f} / {ms['voice']:.1f}"
              f" / {ms['fusion']:.1f}) | {ms['provenance']:.1f} | {100 * share:.0f} % |")
    print("\nworkers: local pool processes; Ray: actors per stage (prepare + judge). Rates over the span from the "
          "first scan's start to the last scan's end, by the workers' clocks; busy: share of that span the workers "
          "spent inside scans; start-up: until the first row reached the driver")
    print("goal: local >= 20 photos/s with 2 workers on 2 cores; Ray overhead <= 15 % at equal workers")


if __name__ == "__main__":
    main()
