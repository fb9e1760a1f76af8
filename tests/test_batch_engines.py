"""deepscreen batch end to end, on a small collection made here: LFW photos and crude splices of them, a photo
with no face, short videos (one with sound), real and vocoded speech, and broken files.

Both engines run on it (Ray as a real local runtime, once for this module), a run is killed mid-way and resumed,
and the labelled manifest's evaluation is checked against the rows it came from.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from deepscreen.batch.rows import TIMING_COLUMNS
from deepscreen.config import SHARED_DIR
from media_factory import gradient, sine, write_video

# Tiers (pyproject): every test here runs the scanner in subprocesses or Ray (over 20 s) on LFW faces.
pytestmark = [pytest.mark.slow, pytest.mark.needs_data]

LFW = SHARED_DIR / "data/faces/lfw"
SPEECH = SHARED_DIR / "data/speech"
PEOPLE = ["Aaron_Eckhart", "Colin_Powell", "George_W_Bush", "Tony_Blair", "Gerhard_Schroeder", "Ariel_Sharon",
          "Donald_Rumsfeld", "Hugo_Chavez"]
BROKEN = ("empty.jpg", "truncated.jpg", "notes.txt", "truncated.mp4", "missing.jpg")


def _splice(target: np.ndarray, donor: np.ndarray) -> np.ndarray:
    """A crude face forgery: the donor's central face region pasted on the target through a feathered ellipse."""
    h, w = target.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    r = ((x - w / 2) / (w * 0.22)) ** 2 + ((y - h * 0.55) / (h * 0.28)) ** 2
    mask = np.clip((1.15 - r) / 0.3, 0, 1)[..., None]
    return (target * (1 - mask) + donor * mask).astype(np.uint8)


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[Path, Path]:
    """(folder, labelled manifest.csv). Photos first, so a run killed early has photos left to do."""
    photos = {p: sorted((LFW / p).glob("*.jpg"))[:1] for p in PEOPLE if (LFW / p).is_dir()}
    people = [p for p in PEOPLE if photos.get(p)]
    if len(people) < 6:
        pytest.skip(f"needs data not on this machine: LFW faces missing under {LFW} (see README, Data)")
    root = tmp_path_factory.mktemp("batch")
    col = root / "collection"
    (col / "real").mkdir(parents=True)
    (col / "fake").mkdir()
    faces = [np.array(Image.open(photos[p][0]).convert("RGB")) for p in people]
    labels = []
    for p, face in zip(people, faces):
        Image.fromarray(face).save(col / "real" / f"{p}.jpg", quality=92)
        labels.append((f"real/{p}.jpg", "real"))
    for k in range(4):
        Image.fromarray(_splice(faces[k], faces[k + 1])).save(col / "fake" / f"splice{k}.jpg", quality=92)
        labels.append((f"fake/splice{k}.jpg", "fake"))
    Image.fromarray(gradient(120, 160)).save(col / "real" / "no_face.png")
    labels.append(("real/no_face.png", "real"))
    for k, audio in enumerate([None, sine(1.0)]):  # 1 s face clips, 10 fps; the second with a sound track
        frames = []
        for i in range(10):
            frame = gradient(240, 320, shift=4 * i)
            frame[45:195, 20 + 6 * i:170 + 6 * i] = faces[k]
            frames.append(frame)
        write_video(col / "real" / f"clip{k}.mp4", frames, fps=10, audio=audio)
        labels.append((f"real/clip{k}.mp4", "real"))
    speech = sorted((SPEECH / "librispeech").rglob("*.flac"))[:1]
    vocoded = sorted((SPEECH / "dev/fake").rglob("*.flac"))[:1]
    if speech and vocoded:
        shutil.copy(speech[0], col / "real" / "speech.flac")
        shutil.copy(vocoded[0], col / "fake" / "vocoded.flac")
        labels += [("real/speech.flac", "real"), ("fake/vocoded.flac", "fake")]
    (col / "broken").mkdir()
    (col / "broken/empty.jpg").write_bytes(b"")
    jpg = (col / "real" / f"{people[0]}.jpg").read_bytes()
    (col / "broken/truncated.jpg").write_bytes(jpg[: len(jpg) // 5])
    (col / "broken/notes.txt").write_text("not media\n")
    (col / "broken/truncated.mp4").write_bytes((col / "real/clip0.mp4").read_bytes()[:1500])
    labels += [(f"broken/{n}", "") for n in BROKEN]  # missing.jpg is listed but does not exist
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows((f"collection/{p}", y) for p, y in labels)
    return col, manifest


def _cli(*args, env: dict | None = None, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "deepscreen.cli", "batch", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _rows(out: Path) -> list[dict]:
    return pq.read_table(out / "results.parquet").drop(list(TIMING_COLUMNS)).to_pylist()


@pytest.fixture(scope="module")
def local_run(collection, tmp_path_factory):
    _, manifest = collection
    out = tmp_path_factory.mktemp("local_out")
    proc = _cli(manifest, "--out", out, "--workers", "2", "--threads-per-worker", "1")
    stdout, stderr = proc.communicate(timeout=600)
    return out, proc.returncode, stdout, stderr


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime for this module's Ray runs (the engine uses a runtime that is already up). Actors
    inherit the environment it starts with: files named POISON kill their worker while it prepares them, files
    named VENOM while it judges them, as a crash in a decoder or a detector would. Four CPUs: room for both
    stages' actors (more than the cores, as the engine's own local runtime has)."""
    ray = pytest.importorskip("ray")
    from deepscreen.batch.worker import CRASH_JUDGING_ON_ENV, CRASH_ON_ENV

    os.environ[CRASH_ON_ENV], os.environ[CRASH_JUDGING_ON_ENV] = "POISON", "VENOM"
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
    os.environ.pop(CRASH_ON_ENV, None)
    os.environ.pop(CRASH_JUDGING_ON_ENV, None)


def _stage_actors(ray) -> dict[str, int]:
    """Ray Data actors started so far on the runtime, per stage class (alive or not)."""
    names = [a["ActorClassName"] for a in ray._private.state.actors().values()]
    return {stage: sum(stage in n for n in names) for stage in ("PrepareStage", "JudgeStage", "ScanStage")}


@pytest.fixture(scope="module")
def ray_run(collection, tmp_path_factory, ray_runtime):
    """The Ray engine in this process, on the module's local Ray runtime: one actor preparing files, two judging
    them (one thread each, as the local run's workers)."""
    from rich.console import Console

    from deepscreen.batch.run import BatchOptions, run_batch
    from deepscreen.config import ScanConfig

    _, manifest = collection
    out = tmp_path_factory.mktemp("ray_out")
    before = _stage_actors(ray_runtime)
    code, summary = run_batch(BatchOptions(manifest, out, engine="ray", workers=2, threads=1, ray_prepare_workers=1,
                                           ray_judge_workers=2, config=ScanConfig(keep_crops=False)),
                              console=Console(stderr=True, force_terminal=False))
    after = _stage_actors(ray_runtime)
    return out, code, summary, {k: after[k] - before[k] for k in after}


def test_local_run_writes_one_row_per_file_and_lists_every_broken_one(collection, local_run):
    col, manifest = collection
    out, code, stdout, stderr = local_run
    assert code == 2, stderr  # some files could not be read
    rows = _rows(out)
    n_listed = sum(1 for _ in open(manifest)) - 1
    assert len(rows) == n_listed == len({r["path"] for r in rows})
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(Path(e["path"]).name for e in errors) == sorted(BROKEN)
    by_name = {Path(e["path"]).name: e["error"] for e in errors}
    assert "empty file" in by_name["empty.jpg"] and "not a media file" in by_name["notes.txt"]
    assert "no such file" in by_name["missing.jpg"].lower() or "not found" in by_name["missing.jpg"].lower()
    assert all(r["label"] != "error" for r in rows if "broken" not in r["path"])
    kinds = {Path(r["path"]).name: r["kind"] for r in rows}
    assert kinds["clip1.mp4"] == "video" and kinds[f"{PEOPLE[0]}.jpg"] == "image"
    clip = next(r for r in rows if r["path"].endswith("clip1.mp4"))
    assert clip["duration_s"] == pytest.approx(1.0, abs=0.15) and clip["has_audio"] and clip["frames_analysed"] >= 4
    assert clip["faces"] >= 1 and json.loads(clip["timeline_json"]) and clip["model_versions"].startswith("face_blend")
    assert not (out / "parts").exists() or not list((out / "parts").iterdir())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == n_listed and summary["errors"] == len(BROKEN)
    assert summary["run"]["scanned"] == n_listed and summary["run"]["skipped_done"] == 0
    assert summary["video_seconds"] == pytest.approx(sum(r["duration_s"] for r in rows if r["kind"] == "video"),
                                                     abs=0.01)
    assert "files/s" in stdout and "video-seconds/s" in stdout and "AUC" in stdout


def test_batch_rows_are_what_scan_says(collection, local_run):
    """The same scan core: a row holds exactly the `scan --json` verdict of that file, and gives it back whole."""
    from deepscreen.batch.rows import verdict_dict
    from deepscreen.config import ScanConfig
    from deepscreen.report import to_json_line
    from deepscreen.scan import Scanner

    col, _ = collection
    rows = {r["path"]: r for r in _rows(local_run[0])}
    scanner = Scanner(ScanConfig(keep_crops=False))
    for path in (col / "real" / f"{PEOPLE[1]}.jpg", col / "fake" / "splice0.jpg", col / "real" / "clip0.mp4"):
        v = json.loads(to_json_line(scanner.scan(path)))
        row = rows[str(path)]
        assert (row["probability"], row["label"], row["sha256"], row["summary"]) == \
            (v["probability"], v["label"], v["sha256"], v["summary"])
        assert json.loads(row["faces_json"] or "[]") == v["faces"]
        assert json.loads(row["models_json"]) == v["models"]
        v["elapsed_s"] = row["elapsed_s"] = None  # time taken, not a property of the file
        v["timings"] = {}  # likewise (rows here are read without the timing columns)
        assert verdict_dict(row) == v


def test_labelled_manifest_is_evaluated_from_its_rows(local_run):
    from deepscreen.batch import metrics

    out = local_run[0]
    rows = _rows(out)
    ev = json.loads((out / "summary.json").read_text())["evaluation"]
    labelled = [r for r in rows if r["truth"] and r["label"] != "error"]
    scored = [r for r in labelled if r["probability"] is not None]
    y = np.array([r["truth"] == "fake" for r in scored])
    p = np.array([r["probability"] for r in scored])
    assert ev["real"] == sum(r["truth"] == "real" for r in labelled) and ev["fake"] == sum(y)
    assert ev["abstained"] == len(labelled) - len(scored) >= 1  # the photo with no face
    pairs = [(a > b) + 0.5 * (a == b) for a in p[y] for b in p[~y]]
    assert ev["auc"] == pytest.approx(np.mean(pairs), abs=1e-9)
    assert ev["log_loss"] == pytest.approx(-np.mean(np.where(y, np.log(p.clip(1e-6)), np.log((1 - p).clip(1e-6)))))
    assert ev["eer"] == pytest.approx(metrics.eer(y, p)[0])
    real = [r for r in labelled if r["truth"] == "real"]
    assert ev["real_flagged"] == pytest.approx(np.mean([r["flagged"] for r in real]))
    assert sum(b["count"] for b in ev["reliability"]) == len(scored)
    for png in ("roc.png", "reliability.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.width >= 300


def test_ray_engine_writes_the_same_files(local_run, ray_run):
    """Ray's two stages (prepare on one actor, judge on two) make the rows the local pool's whole scans make."""
    local_out = local_run[0]
    ray_out, code, summary, actors = ray_run
    assert actors == {"PrepareStage": 1, "JudgeStage": 2, "ScanStage": 0}
    assert code == 2 and summary["run"]["engine"] == "ray" and summary["run"]["scanned"] == summary["files"]
    assert summary["run"]["ray_stages"] == {"prepare_workers": 1, "prepare_cpus": 1, "judge_workers": 2,
                                            "judge_cpus": 1, "batch_size": 4}
    assert _rows(ray_out) == _rows(local_out)
    assert (ray_out / "errors.jsonl").read_text() == (local_out / "errors.jsonl").read_text()
    a, b = (json.loads((d / "summary.json").read_text()) for d in (local_out, ray_out))
    a.pop("run"), b.pop("run")
    assert a == b


def test_ray_in_one_stage_writes_the_same_files(collection, local_run, ray_runtime, tmp_path):
    """--ray-judge-workers 0: each actor prepares and judges (no Prepared handed over), with the same rows."""
    from rich.console import Console

    from deepscreen.batch.run import BatchOptions, run_batch
    from deepscreen.config import ScanConfig

    _, manifest = collection
    before = _stage_actors(ray_runtime)
    code, summary = run_batch(BatchOptions(manifest, tmp_path, engine="ray", workers=2, threads=1,
                                           ray_judge_workers=0, config=ScanConfig(keep_crops=False)),
                              console=Console(stderr=True, force_terminal=False))
    after = _stage_actors(ray_runtime)
    assert {k: after[k] - before[k] for k in after} == {"PrepareStage": 0, "JudgeStage": 0, "ScanStage": 2}
    assert code == 2 and summary["run"]["ray_stages"]["judge_workers"] == 0
    assert _rows(tmp_path) == _rows(local_run[0])
    assert (tmp_path / "errors.jsonl").read_text() == (local_run[0] / "errors.jsonl").read_text()


def test_killed_run_resumes_and_finishes_without_rescanning(collection, local_run, tmp_path):
    _, manifest = collection
    out = tmp_path / "out"
    # One worker and a part every 2 rows, so the kill lands with work both done and left.
    proc = _cli(manifest, "--out", out, "--workers", "1", "--threads-per-worker", "1", "--flush-rows", "2", "-q",
                 start_new_session=True)
    deadline = time.monotonic() + 300
    while not list((out / "parts").glob("part-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its pool, at once, like an OOM kill
    proc.wait()
    assert not (out / "results.parquet").exists(), "the run finished before it could be killed"
    done = sum(pq.read_metadata(p).num_rows for p in (out / "parts").glob("part-*"))
    total = sum(1 for _ in open(manifest)) - 1
    assert 0 < done < total
    proc = _cli(manifest, "--out", out, "--workers", "1", "--threads-per-worker", "1", "-q")
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 2, stderr
    run = json.loads((out / "summary.json").read_text())["run"]
    assert run["skipped_done"] == done and run["scanned"] == total - done
    assert _rows(out) == _rows(local_run[0])  # as if never interrupted
    assert not list((out / "parts").iterdir())


def _pool_workers(pid: int) -> list[int]:
    kids = [int(k) for t in Path(f"/proc/{pid}/task").iterdir() for k in (t / "children").read_text().split()]
    return [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the pool's workers through /proc (Linux)")
def test_a_dead_worker_costs_no_file(collection, local_run, tmp_path):
    """A worker killed under the pool (as a decoder crash would) is replaced; the files it had in flight are
    scanned again, alone, and come out as in an undisturbed run."""
    from deepscreen.batch.worker import HOLD_ON_ENV

    _, manifest = collection
    out, release = tmp_path / "out", tmp_path / "release"
    held = "real/clip1.mp4"  # one of the last real files: the other worker goes on meanwhile
    proc = _cli(manifest, "--out", out, "--workers", "2", "--flush-rows", "1", "-q",
                env={HOLD_ON_ENV: f"{held}|{release}"})
    holder = Path(f"{release}.pid")
    deadline = time.monotonic() + 300
    while not holder.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert holder.exists(), "no worker reached the held file"
    victim = int(holder.read_text())
    assert victim in _pool_workers(proc.pid)
    os.kill(victim, signal.SIGKILL)
    release.touch()  # the file is scanned again, alone, without waiting
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 2 and "a worker process died" in stderr, stderr[-4000:]
    assert _rows(out) == _rows(local_run[0])


@pytest.fixture(scope="module")
def poisoned(collection, tmp_path_factory) -> Path:
    """Three photos and two files whose scan kills the worker process: in Ray, one while it is prepared, one while
    it is judged (see CRASH_ON_ENV, CRASH_JUDGING_ON_ENV)."""
    col, _ = collection
    folder = tmp_path_factory.mktemp("poisoned")
    photos = sorted((col / "real").glob("*.jpg"))[:3]
    for p in photos:
        shutil.copy(p, folder / p.name)
    shutil.copy(photos[0], folder / "POISON.jpg")
    shutil.copy(photos[1], folder / "VENOM.jpg")
    return folder


def _check_poisoned(out: Path) -> list[dict]:
    rows = _rows(out)
    bad = [r for r in rows if r["label"] == "error"]
    assert len(rows) == 5 and [Path(r["path"]).name for r in bad] == ["POISON.jpg", "VENOM.jpg"]
    assert all("worker process died" in r["error"] for r in bad)
    assert all(r["probability"] is not None for r in rows if r not in bad)
    assert [json.loads(line)["path"] for line in (out / "errors.jsonl").read_text().splitlines()] == \
        [r["path"] for r in bad]
    return rows


def test_a_file_that_crashes_its_worker_is_one_error_row_in_both_engines(poisoned, ray_runtime, tmp_path):
    """In either Ray stage, too: the crash costs its file alone."""
    from rich.console import Console

    from deepscreen.batch.run import BatchOptions, run_batch
    from deepscreen.batch.worker import CRASH_ON_ENV
    from deepscreen.config import ScanConfig

    proc = _cli(poisoned, "--out", tmp_path / "local", "--workers", "2", "-q")  # inherits CRASH_ON_ENV
    assert os.environ.get(CRASH_ON_ENV) == "POISON"
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 2, stderr
    local = _check_poisoned(tmp_path / "local")
    code, _ = run_batch(BatchOptions(poisoned, tmp_path / "ray", engine="ray", workers=1, threads=1,
                                     ray_judge_workers=1, config=ScanConfig(keep_crops=False)),
                        console=Console(stderr=True, force_terminal=False))
    assert code == 2
    assert _check_poisoned(tmp_path / "ray") == local
    # One stage (the default), through the CLI on its own private runtime (it inherits the crash variables): on
    # the module's runtime the actors of the crashed runs above can still hold its CPUs (docs/batch.md).
    proc = _cli(poisoned, "--out", tmp_path / "ray1", "--engine", "ray", "--workers", "1", "-q")
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 2, stderr
    assert _check_poisoned(tmp_path / "ray1") == local  # both crashes inside the one stage's actor


def test_ray_calls_shrink_so_a_short_run_has_no_long_tail():
    """Each actor gets at least MIN_CALLS_PER_ACTOR calls where the collection allows: a short run of clips is cut
    into calls of fewer files (the last call of a run leaves the other actors idle for its whole length); a long
    run keeps the configured batch size; a call always holds at least one file."""
    from deepscreen.batch.ray_engine import MIN_CALLS_PER_ACTOR, call_size

    assert call_size(2000, 4, 2) == 4
    assert call_size(40, 4, 2) == 2 and 40 / call_size(40, 4, 2) >= MIN_CALLS_PER_ACTOR * 2
    assert call_size(10, 4, 2) == 1 and call_size(0, 4, 2) == 1 and call_size(100, 4, 0) == 4
