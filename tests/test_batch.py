"""deepscreen batch, the parts that need no models: reading INPUT, the metrics, the crash-safe store.

The engines themselves (local and Ray, resume after a kill, evaluation) are in test_batch_engines.py.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepscreen.batch import metrics
from deepscreen.batch.inputs import InputError, Item, read_items
from deepscreen.batch.rows import SCHEMA, table
from deepscreen.batch.run import pending
from deepscreen.batch.store import ERRORS, RESULTS, Store


# -- INPUT ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def tree(tmp_path):
    (tmp_path / "col/sub").mkdir(parents=True)
    for name in ("b.jpg", "a.jpg", "sub/c.mp4", ".hidden.jpg"):
        (tmp_path / "col" / name).write_bytes(b"x")
    return tmp_path


def test_folder_is_walked_sorted_without_hidden_files(tree):
    items = read_items(tree / "col")
    assert [i.path for i in items] == [str(tree / "col" / n) for n in ("a.jpg", "b.jpg", "sub/c.mp4")]
    assert all(i.truth is None for i in items)


def test_an_output_folder_inside_the_collection_is_not_screened(tree):
    (tree / "col/runs/x/parts").mkdir(parents=True)
    (tree / "col/runs/x/results.parquet").write_bytes(b"PAR1")
    (tree / "col/runs/x/parts/part-1.parquet").write_bytes(b"PAR1")
    (tree / "col/runs_photo.jpg").write_bytes(b"x")  # a name that merely starts like the folder stays
    paths = [i.path for i in read_items(tree / "col", exclude=tree / "col/runs/x")]
    assert paths == [str(tree / "col" / n) for n in ("a.jpg", "b.jpg", "runs_photo.jpg", "sub/c.mp4")]


def test_path_list_is_relative_to_its_folder_and_skips_comments(tree):
    lst = tree / "col" / "list.txt"
    lst.write_text("# photos\nb.jpg\n\n  sub  \n/abs/missing.jpg\nb.jpg\n")
    assert [i.path for i in read_items(lst)] == [str(tree / "col/b.jpg"), str(tree / "col/sub/c.mp4"),
                                                 "/abs/missing.jpg"]


def test_csv_manifest_labels_and_folders(tree):
    m = tree / "m.csv"
    m.write_text("Path,Label,notes\ncol/a.jpg,REAL,x\ncol/sub,fake,\ncol/b.jpg,,\n")
    assert read_items(m) == [Item(str(tree / "col/a.jpg"), "real"), Item(str(tree / "col/sub/c.mp4"), "fake"),
                             Item(str(tree / "col/b.jpg"), None)]


def test_parquet_manifest(tree):
    m = tree / "m.parquet"
    pq.write_table(pa.table({"path": [str(tree / "col/a.jpg"), "col/b.jpg"], "label": ["fake", None]}), m)
    assert read_items(m) == [Item(str(tree / "col/a.jpg"), "fake"), Item(str(tree / "col/b.jpg"), None)]


@pytest.mark.parametrize("text, message", [
    ("path,label\ncol/a.jpg,forged\n", "row 2: label 'forged'"),
    ("file,label\ncol/a.jpg,real\n", "needs a 'path' column"),
    ("path,label\ncol/a.jpg,real\ncol/a.jpg,fake\n", "listed twice"),
    ("path\n\n,\n", "row 2: empty path"),
])
def test_bad_manifests_are_refused_with_the_reason(tree, text, message):
    m = tree / "m.csv"
    m.write_text(text)
    with pytest.raises(InputError, match=message):
        read_items(m)


def test_binary_file_is_not_a_path_list(tree):
    f = tree / "photo.bin"
    f.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\xff\xfe")
    with pytest.raises(InputError, match="not a folder, a text file of paths"):
        read_items(f)
    with pytest.raises(InputError, match="no such file or folder"):
        read_items(tree / "nothing")


# -- metrics -------------------------------------------------------------------------------------------------------
def _pairwise_auc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    return np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)])


def test_auc_equals_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) * 0.6 + 0.3 * y, 1)  # coarse scores: many ties
    assert metrics.auc(y, s) == pytest.approx(_pairwise_auc(y, s), abs=1e-12)
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert metrics.auc([0, 1], [0.5, 0.5]) == 0.5
    assert np.isnan(metrics.auc([1, 1], [0.2, 0.3]))


def test_eer_roc_and_log_loss_on_a_hand_worked_case():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])  # one real above one fake
    fpr, tpr, thr = metrics.roc_curve(y, s)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    e, t = metrics.eer(y, s)
    assert e == pytest.approx(0.25) and t in (0.6, 0.4)  # 1 of 4 reals flagged where 1 of 4 fakes is missed
    assert metrics.log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    bins = metrics.reliability([0, 1, 1], [0.05, 0.95, 0.91])
    assert bins[0]["count"] == 1 and bins[9]["count"] == 2 and bins[9]["share_fake"] == 1.0
    assert bins[9]["mean_probability"] == pytest.approx(0.93) and bins[5]["count"] == 0
    assert metrics.ece([0, 1, 1], [0.05, 0.95, 0.91]) == pytest.approx((0.05 + 2 * 0.07) / 3)


# -- the store -----------------------------------------------------------------------------------------------------
def _row(path, label="authentic", p=0.1, key="k1", size=1, mtime=1, sha="ab"):
    return {"path": path, "label": label, "probability": p, "setup_key": key, "size_bytes": size,
            "mtime_ns": mtime, "sha256": sha, "flagged": False, "kind": "image",
            "error": "bad" if label == "error" else None}


def test_newest_row_wins_and_compaction_leaves_one_row_per_input_file(tmp_path):
    store = Store(tmp_path / "out")
    store.write_part([_row("a", p=0.1), _row("b", label="error", p=None)])
    store.write_part([_row("a", p=0.9), _row("gone")])
    assert {r["path"]: r["probability"] for r in store.read()} == {"a": 0.9, "b": None, "gone": 0.1}
    rows = store.compact(["b", "a", "c"], {"a": "fake", "b": None, "c": "real"})
    assert [(r["path"], r["truth"]) for r in rows] == [("b", None), ("a", "fake")]  # c never scanned; gone dropped
    assert pq.read_table(tmp_path / "out" / RESULTS).schema.equals(SCHEMA)
    assert not list((tmp_path / "out/parts").iterdir())
    errors = [json.loads(line) for line in (tmp_path / "out" / ERRORS).read_text().splitlines()]
    assert errors == [{"path": "b", "error": "bad", "size_bytes": 1}]


def test_a_kill_between_compaction_and_deleting_parts_counts_nothing_twice(tmp_path):
    store = Store(tmp_path / "out")
    store.write_part([_row("a", p=0.2)])
    part = next((tmp_path / "out/parts").iterdir())
    saved = part.read_bytes()
    store.compact(["a"], {})
    part.write_bytes(saved)  # as if killed after results.parquet was renamed, before the part was deleted
    (tmp_path / "out/parts/.tmp-123-part-x.parquet").write_bytes(b"PAR1 half written")
    store = Store(tmp_path / "out")  # a restart: the half-written temporary is removed, never read
    assert [p.name for p in (tmp_path / "out/parts").iterdir()] == [part.name]
    assert [(r["path"], r["probability"]) for r in store.read()] == [("a", 0.2)]


def test_parts_of_only_errors_and_of_full_rows_share_one_schema(tmp_path):
    t = table([_row("x", label="error", p=None)])
    assert t.schema.equals(SCHEMA) and t.column("probability").type == pa.float64()


def test_pending_skips_unchanged_files_under_the_same_setup_key_only(tmp_path):
    from deepscreen.media.sniff import file_sha256

    files = {}
    for name in ("same", "touched", "changed", "other_key", "failed", "new"):
        f = tmp_path / name
        f.write_bytes(name.encode())
        st = f.stat()
        files[name] = _row(str(f), size=st.st_size, mtime=st.st_mtime_ns, sha=file_sha256(f))
    files["touched"]["mtime_ns"] -= 10**9  # touched since, bytes unchanged: the sha256 says done
    files["changed"]["mtime_ns"] -= 10**9
    files["changed"]["sha256"] = "0" * 64
    files["other_key"]["setup_key"] = "k0"
    files["failed"].update(label="error", sha256="")
    done = {r["path"]: r for n, r in files.items() if n != "new"}
    items = [Item(str(tmp_path / n)) for n in files]
    assert [i.path.rsplit("/", 1)[1] for i in pending(items, done, "k1")] == ["changed", "other_key", "new"]
    assert [i.path.rsplit("/", 1)[1] for i in pending(items, done, "k1", retry_errors=True)] == \
        ["changed", "other_key", "failed", "new"]


def test_batch_imports_neither_the_generator_side_nor_training():
    """Batch jobs only call the scan core: importing every batch module pulls in no deepscreen.synthesis or
    deepscreen.training (checked in a fresh interpreter, so other tests' imports do not count)."""
    import subprocess
    import sys

    code = ("import sys, pkgutil, importlib, deepscreen.batch as b\n"
            "for m in pkgutil.iter_modules(b.__path__): importlib.import_module('deepscreen.batch.' + m.name)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('deepscreen.synthesis', 'deepscreen.training'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- the two halves of a scan, as the Ray engine's stages run them ---------------------------------------------------
@pytest.fixture(scope="module")
def batch_worker():
    from deepscreen.batch.worker import Worker
    from deepscreen.config import ScanConfig

    return Worker(ScanConfig(keep_crops=False), threads=1)


def _file_columns(row: dict) -> dict:
    from deepscreen.batch.rows import TIMING_COLUMNS

    return {k: v for k, v in row.items() if k not in TIMING_COLUMNS}


def test_prepare_then_judge_gives_the_row_of_the_whole_scan(batch_worker, lfw_face_path, face_video):
    """What the Ray stages do to a file (prepare, pickle, judge) makes the local engine's row for it."""
    for path in map(str, (lfw_face_path, face_video)):
        size, mtime, prepared = batch_worker.prepare(path)
        row = batch_worker.judge(path, "real", size, mtime, prepared)
        assert row["probability"] is not None and row["faces"] >= 1
        assert _file_columns(row) == _file_columns(batch_worker.scan(path, "real"))


def test_a_failure_in_either_stage_is_that_file_s_error_row(batch_worker, lfw_face_path, monkeypatch):
    path = str(lfw_face_path)
    size, mtime, prepared = batch_worker.prepare(path)
    monkeypatch.setattr(batch_worker.scanner, "judge", lambda p: 1 / 0)
    row = batch_worker.judge(path, "fake", size, mtime, prepared)
    assert (row["label"], row["truth"], row["size_bytes"], row["setup_key"]) == ("error", "fake", size,
                                                                                  batch_worker.key)
    assert "unexpected error while judging it (ZeroDivisionError" in row["error"] and path in row["error"]
    monkeypatch.undo()
    monkeypatch.setattr(batch_worker.scanner, "prepare", lambda p: 1 / 0)
    row = batch_worker.judge(path, None, *batch_worker.prepare(path))
    assert row["label"] == "error" and "unexpected error while preparing it (ZeroDivisionError" in row["error"]


def test_ray_runs_one_stage_unless_a_judge_stage_is_asked_for():
    """One stage is the faster layout on one machine (docs/batch.md), so it is the default; naming judge actors, or
    only CPUs for them, makes two stages."""
    from deepscreen.batch.engines import make_engine
    from deepscreen.config import ScanConfig

    def stages(**options):
        s = make_engine("ray", 3, 2, ScanConfig(), **options).stages
        return s.prepare_workers, s.prepare_cpus, s.judge_workers, s.judge_cpus

    assert stages() == (3, 2, 0, 2)
    assert stages(judge_workers=1) == (3, 2, 1, 2)
    assert stages(judge_cpus=4) == (3, 2, 3, 4)  # the detectors get actors of their own, as many as --workers
    assert stages(prepare_workers=2, judge_workers=0) == (2, 2, 0, 2)
    with pytest.raises(ValueError, match="--ray-judge-cpus needs a judge stage"):
        make_engine("ray", 3, 2, ScanConfig(), judge_workers=0, judge_cpus=4)


def test_ray_refuses_stages_the_cluster_has_no_room_for_instead_of_waiting():
    from deepscreen.batch.ray_engine import RayEngine, RayStages
    from deepscreen.batch.worker import WorkerStartError
    from deepscreen.config import ScanConfig

    engine = RayEngine(RayStages(prepare_workers=2, prepare_cpus=1, judge_workers=2, judge_cpus=2), ScanConfig())
    engine._check_room(6)  # 2 x 1 + 2 x 2 fit
    with pytest.raises(WorkerStartError, match=r"has 5 CPUs and the stages need 6 \(prepare 2 x 1, judge 2 x 2\)"):
        engine._check_room(5)
    one = RayEngine(RayStages(prepare_workers=3, prepare_cpus=2, judge_workers=0, judge_cpus=2), ScanConfig())
    one._check_room(6)  # one stage: the judge CPUs reserve nothing
    with pytest.raises(WorkerStartError, match=r"has 4 CPUs and the stages need 6 \(one stage 3 x 2\)"):
        one._check_room(4)


@pytest.mark.parametrize("flag, value", [("--ray-judge-workers", "2"), ("--ray-judge-workers", "0"),
                                         ("--ray-prepare-workers", "2"), ("--ray-judge-cpus", "2")])
def test_ray_stage_options_need_the_ray_engine(tmp_path, flag, value):
    from typer.testing import CliRunner

    from deepscreen.cli import app

    res = CliRunner().invoke(app, ["batch", str(tmp_path), "--out", str(tmp_path / "out"), flag, value])
    assert res.exit_code == 2 and "needs --engine ray" in res.output and flag in res.output
    assert not (tmp_path / "out").exists()


def test_one_ray_stage_has_no_judge_cpus_to_set(tmp_path):
    from typer.testing import CliRunner

    from deepscreen.cli import app

    res = CliRunner().invoke(app, ["batch", str(tmp_path), "--out", str(tmp_path / "out"), "--engine", "ray",
                                   "--ray-judge-workers", "0", "--ray-judge-cpus", "2"])
    assert res.exit_code == 2 and "needs a judge stage" in res.output and "--ray-judge-workers 0" in res.output
    assert not (tmp_path / "out").exists()
