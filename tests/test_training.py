"""`deepscreen train` and `deepscreen evaluate` for real, on a handful of LFW people (a few optimiser steps)."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest

from deepscreen.detectors.face_blend import FaceBlendDetector
from deepscreen.faces.align import CROP_SIZE
from deepscreen.training.data import split_of
from deepscreen.training.evaluate import evaluate_folder, format_metrics, write_forgery_folder
from deepscreen.training.face_stages import train_recipe
from deepscreen.training.recipe import FACE_BLEND
from deepscreen.training.train import TrainConfig, train

from conftest import LFW_DIR, needs_data


def _cli(*args: str):
    """The command in this process (typer's CliRunner): a one-line usage error needs no new interpreter."""
    from typer.testing import CliRunner

    from deepscreen.cli import app

    return CliRunner().invoke(app, list(args))


# The keys training wrote before the recipe was data (models/face_blend.safetensors has them all, and more that
# benchmarks add later: face_limits, the operating point).
FACE_META_KEYS = {"name", "version", "input_size", "platt", "trained_steps", "train_minutes", "precision",
                  "prior_steps", "prior_minutes", "init_sha256", "init_weights_sha256", "config", "val_auc",
                  "test_crop_auc", "weights_sha256"}


@pytest.fixture(scope="module")
def small_lfw(tmp_path_factory):
    """Three people from each split, two images each where they exist."""
    root = tmp_path_factory.mktemp("lfw_small")
    want = {"train": 3, "val": 3, "test": 3}
    for person in sorted(p.name for p in needs_data(LFW_DIR).iterdir() if p.is_dir()):
        s = split_of(person)
        if want[s]:
            want[s] -= 1
            (root / person).mkdir()
            for img in sorted((LFW_DIR / person).glob("*.jpg"))[:2]:
                shutil.copy(img, root / person / img.name)
        if not any(want.values()):
            break
    return root


def test_train_writes_loadable_calibrated_weights(small_lfw, tmp_path):
    cfg = TrainConfig(data=small_lfw, out=tmp_path / "w.safetensors", work=tmp_path / "work", steps=2,
                      pairs_per_batch=2, val_every=2, val_images=4)
    logs: list[str] = []
    report = train(cfg, log=logs.append)
    assert any("val AUC" in line for line in logs)
    assert (tmp_path / "work" / "checkpoint.pt").exists() and (tmp_path / "work" / "report.json").exists()
    assert report["test_crops"]["n_real"] == report["test_crops"]["n_fake"] > 0
    det = FaceBlendDetector(weights=cfg.out)
    assert det.meta["trained_steps"] == 2 and len(det.meta["platt"]) == 2
    assert FACE_META_KEYS <= det.meta.keys() and det.meta["version"] == FACE_BLEND.version
    assert det.meta["recipe"] == json.loads(json.dumps(asdict(FACE_BLEND)))  # the recipe the stage was cut from
    assert det.meta["config"]["threads"] == FACE_BLEND.threads and "recipe" not in det.meta["config"]
    shipped = FaceBlendDetector().meta  # what the scanner reads: every key a run writes but the new "recipe"
    assert FACE_META_KEYS <= shipped.keys() and det.meta.keys() - shipped.keys() == {"recipe"}
    crops = np.random.default_rng(0).integers(0, 256, (3, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    scores = det.score_faces(crops)
    a, b = det.meta["platt"]
    p = 1 / (1 + np.exp(-(a * scores.logits + b)))  # the calibration the weights carry
    assert scores.logits.shape == (3,) and np.all(np.isfinite(p) & (p >= 0) & (p <= 1))
    assert scores.heatmaps.shape == (3, 10, 10)

    # Resuming a finished run does no more steps and keeps the same step count.
    report2 = train(cfg, log=logs.append)
    assert any("resumed at step 2" in line for line in logs)
    assert FaceBlendDetector(weights=cfg.out).meta["trained_steps"] == 2 and report2["test_crops"]["n_real"] > 0


def test_a_stage_in_its_parts_starts_steps_validates_and_finishes(small_lfw, tmp_path):
    """train() is setup, take_step, validate and finish: each can be driven alone (as a notebook or a search
    would), and together they write the weights train() writes."""
    from deepscreen.training.train import finish, setup, take_step, validate

    cfg = TrainConfig(data=small_lfw, out=tmp_path / "w.safetensors", work=tmp_path / "work", steps=2,
                      pairs_per_batch=2, val_every=2, val_images=4, precision="float32")
    run = setup(cfg, log=lambda _: None)
    assert run.step == 0 and run.end == 2 and len(run.val_x) == len(run.val_y) > 0
    losses = [take_step(run) for _ in range(2)]
    assert run.step == 2 and all(np.isfinite(loss).all() for loss in losses)
    auc = validate(run)
    assert 0 <= auc <= 1 and run.best_auc == auc and run.checkpoint.exists() and run.best.exists()
    report = finish(run)
    meta = FaceBlendDetector(weights=cfg.out).meta
    assert meta["trained_steps"] == 2 and meta["val_auc"] == report["val"]["auc"]
    assert setup(cfg, log=lambda _: None).step == 2  # a new setup resumes from the checkpoint validate wrote


def test_two_runs_of_one_config_write_the_same_weights(small_lfw, tmp_path):
    """Training is deterministic on one machine: the same config in other folders reaches the same tensors, and the
    metadata's `weights_sha256` (a digest of the tensors alone) says so although the files differ (minutes, paths)."""
    from safetensors.torch import load_file

    from deepscreen.detectors.blendnet import file_weights_digest, weights_digest

    reports = []
    for run in ("a", "b"):
        cfg = TrainConfig(data=small_lfw, out=tmp_path / run / "w.safetensors", work=tmp_path / run / "work", steps=3,
                          pairs_per_batch=2, val_every=2, val_images=4)
        reports.append(train(cfg, log=lambda _: None))
    a, b = (load_file(str(tmp_path / run / "w.safetensors")) for run in ("a", "b"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert reports[0]["weights_sha256"] == reports[1]["weights_sha256"] == weights_digest(a)
    assert FaceBlendDetector(weights=tmp_path / "a" / "w.safetensors").meta["weights_sha256"] == weights_digest(b)
    assert file_weights_digest(tmp_path / "b" / "w.safetensors") == reports[0]["weights_sha256"]
    assert reports[0]["sha256"] != reports[1]["sha256"]  # the files carry their own work folders
    name = next(k for k in a if a[k].is_floating_point())
    a[name] = a[name].clone()
    a[name].view(-1)[0] += 1
    assert weights_digest(a) != weights_digest(b)


def test_second_cycle_starts_from_given_weights(small_lfw, tmp_path):
    """`train --init W --lr-scale s`: the run starts from W (not ImageNet) and its metadata counts W's steps."""

    from deepscreen.config import MODELS_DIR
    from deepscreen.detectors.blendnet import file_weights_digest
    from deepscreen.media.io import file_sha256

    init = MODELS_DIR / "face_blend.safetensors"
    cfg = TrainConfig(data=small_lfw, out=tmp_path / "w2.safetensors", work=tmp_path / "work2", steps=1,
                      pairs_per_batch=2, val_every=1, val_images=4, init=init, lr_scale=1e-9)
    logs: list[str] = []
    train(cfg, log=logs.append)
    meta = FaceBlendDetector(weights=cfg.out).meta
    prior = FaceBlendDetector(weights=init).meta
    assert meta["prior_steps"] == prior["trained_steps"] + prior.get("prior_steps", 0) and meta["trained_steps"] == 1
    assert meta["init_sha256"] == file_sha256(init) and any("starting from" in line for line in logs)
    assert meta["init_weights_sha256"] == file_weights_digest(init)
    # With a vanishing learning rate the weights stay the committed ones: same scores on the same crops.
    crops = np.random.default_rng(1).integers(0, 256, (2, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    a = FaceBlendDetector(weights=cfg.out).score_faces(crops).logits
    b = FaceBlendDetector(weights=init).score_faces(crops).logits
    assert np.allclose(a, b, atol=0.05)

    res = _cli("train", "--init", str(tmp_path / "none.st"))
    assert res.exit_code == 2 and res.stderr.strip() == f"deepscreen: error: {tmp_path / 'none.st'}: no such weights file"


def test_recipe_runs_both_stages_and_resumes(small_lfw, tmp_path):
    """The recipe in one call: stage 1 from ImageNet, stage 2 from stage 1's weights with composites from other
    people; the final weights count both stages, and a second call redoes nothing. `stop_early` stops each stage
    at the recipe's `short_stop_at` (11/15 and 1/2) and keeps stage 2's last weights."""
    logs: list[str] = []
    # Validation only at each stage's end (a checkpoint is written at every one): what this test needs, and fast.
    small = FACE_BLEND.replace(pairs_per_batch=2, val_every=100, val_images=4, precision="float32",
                               stage1={"steps": 3}, stage2={"steps": 2}, stage3={"steps": 0})
    out, work = tmp_path / "w.safetensors", tmp_path / "work"
    train_recipe(small, small_lfw, out, work, log=logs.append)
    first = FaceBlendDetector(weights=work / "stage1" / "face_blend.safetensors").meta
    meta = FaceBlendDetector(weights=out).meta
    assert first["trained_steps"] == 3 and first["config"]["donor_p"] == 0.0 and first["config"]["keep"] == "best"
    assert meta["trained_steps"] == 2 and meta["prior_steps"] == 3 and meta["config"]["donor_p"] == 0.3
    assert first["config"]["lowres_p"] == 0.0 and meta["config"]["lowres_p"] == FACE_BLEND.stage2.lowres_p
    assert meta["config"]["keep"] == "best"
    assert meta["config"]["lr_scale"] == 0.3 and meta["init_sha256"] is not None
    assert meta["recipe"]["stage2"]["steps"] == 2 and meta["recipe"]["version"] == FACE_BLEND.version
    assert (work / "lfw_landmarks.npz").exists() and not (work / "stage1" / "lfw_landmarks.npz").exists()
    logs.clear()
    train_recipe(small, small_lfw, out, work, log=logs.append)
    assert any("stage 1 already done" in line for line in logs)
    assert not any(line.startswith("step ") and " val AUC " not in line for line in logs)
    assert FaceBlendDetector(weights=out).meta["trained_steps"] == 2
    short = tmp_path / "short.safetensors"
    train_recipe(small.replace(stage1={"steps": 4}, stage2={"lowres_p": 0.5}), small_lfw, short, tmp_path / "short",
                 log=logs.append, stop_early=True)
    meta = FaceBlendDetector(weights=short).meta
    assert meta["prior_steps"] == 3 and meta["trained_steps"] == 1 and meta["config"]["keep"] == "last"
    first = FaceBlendDetector(weights=tmp_path / "short" / "stage1" / "face_blend.safetensors").meta
    assert meta["config"]["lowres_p"] == 0.5 and first["config"]["lowres_p"] == 0.0  # small copies: stage 2 only
    assert first["config"]["stop_at"] == FACE_BLEND.stage1.short_stop_at and first["trained_steps"] == 3  # of 4
    assert meta["config"]["steps"] == 2 and meta["config"]["stop_at"] == 0.5


def test_stopped_cycle_keeps_the_whole_cycles_learning_rate(small_lfw, tmp_path):
    """`stop_at`: training ends after that share of the cycle, with the learning rate where the whole cycle's
    cosine has it at that step (not a shorter cycle's, which would have decayed to zero)."""
    import math

    import torch

    from deepscreen.training.train import stop_step

    cfg = TrainConfig(data=small_lfw, out=tmp_path / "w.safetensors", work=tmp_path / "work", steps=8,
                      stop_at=0.5, pairs_per_batch=2, val_every=100, val_images=4, precision="float32")
    train(cfg, log=lambda _: None)
    ck = torch.load(cfg.work / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 4 and FaceBlendDetector(weights=cfg.out).meta["trained_steps"] == 4
    last = 3  # the learning rate of the last step run: warm-up share x the 8-step cosine at step 3
    want = cfg.lr * (last + 1) / 100 * 0.5 * (1 + math.cos(math.pi * last / 8))
    assert ck["opt"]["param_groups"][0]["lr"] == pytest.approx(want, rel=1e-9)
    assert stop_step(6000, 4400 / 6000) == 4400 and stop_step(1, 0.5) == 1
    with pytest.raises(ValueError, match="must be in"):
        stop_step(10, 0.0)


def test_keep_last_writes_the_final_weights_not_the_best(small_lfw, tmp_path):
    """`keep="last"` (stage 2 of the short recipe) writes the weights of the last step; "best" those of the best
    validation check. Both runs take the same path (same seed); on it the best check is not the last step."""
    import torch

    from deepscreen.detectors.blendnet import load_weights

    written = {}
    for keep in ("best", "last"):
        cfg = TrainConfig(data=small_lfw, out=tmp_path / f"{keep}.safetensors", work=tmp_path / keep, steps=4,
                          pairs_per_batch=2, val_every=1, val_images=4, precision="float32", keep=keep)
        train(cfg, log=lambda _: None)
        written[keep] = load_weights(cfg.out)[0].state_dict()
        ck = torch.load(cfg.work / "checkpoint.pt", weights_only=False)["model"]
        best = torch.load(cfg.work / "best.pt")
        want = ck if keep == "last" else best
        key = "classifier.weight"  # float16 on disk: compare at that precision
        assert not torch.equal(best[key], ck[key])  # else the two choices could not be told apart
        assert torch.allclose(written[keep][key], want[key].to(torch.float16).float())
    assert not torch.allclose(written["best"][key], written["last"][key])
    with pytest.raises(ValueError, match="keep='first'"):
        train(TrainConfig(data=small_lfw, out=tmp_path / "x.safetensors", work=tmp_path / "x", keep="first"))


def test_training_model_runs_depthwise_convolutions_in_float32():
    """The training step's speed-up (BlendNet.depthwise_in_float32 + channels-last layout) keeps the weights, their
    names and, to bfloat16's precision, the outputs; under bfloat16 autocast the depthwise layers give float32."""
    import copy

    import torch

    from deepscreen.detectors.blendnet import BlendNet

    torch.manual_seed(0)
    plain = BlendNet().eval()
    fast = copy.deepcopy(plain).depthwise_in_float32().to(memory_format=torch.channels_last)
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 3, CROP_SIZE, CROP_SIZE)
    seen = []
    fast.backbone._blocks[5]._depthwise_conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.no_grad():
        reference = plain(x)[0]
        with torch.autocast("cpu", torch.bfloat16):
            out = fast(x)[0]
    assert seen == [torch.float32]
    assert torch.allclose(out.float(), reference, atol=0.05)


def test_lean_padding_trains_the_same_function():
    """BlendNet.lean_padding (stride-1 convolutions pad themselves, ReLU6 in place), which `deepscreen train`
    applies: the same outputs and the same gradients as the model as loaded, in training mode, to float32
    rounding (in the same memory layout: channels-last alone reorders sums); the padded copies are gone from the
    stride-1 layers only."""
    import copy

    import torch
    from torch import nn

    from deepscreen.detectors.blendnet import BlendNet

    torch.manual_seed(0)
    plain = BlendNet().train()
    lean = copy.deepcopy(plain).lean_padding()
    convs = [m for m in lean.modules() if hasattr(m, "static_padding")]
    assert sum(isinstance(m.static_padding, nn.ZeroPad2d) for m in convs) == 5  # the stride-2 layers keep theirs
    assert not any(isinstance(m.static_padding, nn.ZeroPad2d) and tuple(m.stride) == (1, 1) for m in convs)
    x = torch.randn(4, 3, CROP_SIZE, CROP_SIZE)
    grads, outs = [], []
    for model in (plain, lean):
        torch.manual_seed(1)  # the same dropout and drop-connect draws for both
        logit, boundary = model(x)
        loss = logit.square().mean() + boundary.sigmoid().mean()
        loss.backward()
        outs.append((logit.detach(), boundary.detach()))
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-5) and torch.allclose(outs[0][1], outs[1][1], atol=1e-5)
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], rtol=1e-4, atol=1e-6), name
    assert grads[0]["backbone._blocks.0._depthwise_conv.weight"].abs().sum() > 0  # the gradients reach the stem


def test_keeping_freed_memory_stops_page_faults_for_reused_buffers(tmp_path):
    """training.allocator.keep_freed_memory: a large buffer freed and allocated again is served from memory the
    process kept, with no new page faults; under glibc's defaults every such buffer is faulted in afresh. In
    child processes, since a malloc setting holds for the whole process."""
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(
        "import resource, sys\n"
        "import torch\n"
        "from deepscreen.training.allocator import keep_freed_memory\n"
        "kept = keep_freed_memory() if sys.argv[1] == 'keep' else None\n"
        "def faults():\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "per_round = []\n"
        "for i in range(10):  # 80 MB, like the largest activations of a training step\n"
        "    before = faults(); a = torch.ones(20_000_000); a.sum(); del a\n"
        "    per_round.append(faults() - before)\n"
        "print(kept, *per_round)\n")
    runs = {}
    for mode in ("keep", "default"):
        out = subprocess.run([sys.executable, str(probe), mode], capture_output=True, text=True, check=True)
        kept, *faults = out.stdout.split()
        runs[mode] = (kept, [int(f) for f in faults])
    assert runs["keep"][0] == "True"  # glibc (this platform): the settings took effect
    pages = 80_000_000 // 4096
    # glibc's default: every round a fresh mapping, faulted in page by page
    assert min(runs["default"][1]) > pages // 2, runs
    # kept: after a few rounds (glibc grows its heap first) the buffer comes back without faults
    assert min(runs["keep"][1][-3:]) < pages // 20, runs


def test_cli_train_defaults_are_the_recipe(tmp_path, monkeypatch):
    """`deepscreen train`'s defaults are the recipe's values, the very objects (read through face_flags), and
    `--help` shows them; with no flag the CLI hands training the recipe itself, whose stage configs carry the same
    values; a flag changes only the fields it names."""
    import re

    import typer
    from typer.testing import CliRunner

    from deepscreen import cli
    from deepscreen.training import face_stages
    from deepscreen.training.face_flags import FLAGS, flag_default

    options = {p.name: p for p in typer.main.get_command(cli.app).commands["train"].params}
    page = CliRunner().invoke(cli.app, ["train", "--help"], env={"COLUMNS": "1000", "NO_COLOR": "1"}).output
    shown = dict(re.findall(r"--([a-z0-9-]+)\s.*?\[default: ([^\]]+)\]", page))
    assert set(FLAGS) <= options.keys()
    for flag in FLAGS:
        assert options[flag].default is flag_default(flag), flag  # not a copy that could drift
        assert shown[flag.replace("_", "-")] == str(flag_default(flag)), flag
    assert (FACE_BLEND.stage1.steps, FACE_BLEND.stage2.steps, FACE_BLEND.stage3.steps) == (6000, 1200, 600)

    ran = []
    monkeypatch.setattr(face_stages, "train_recipe", lambda recipe, *a, **k: ran.append((recipe, k)))
    shared = tmp_path / "shared"
    (shared / "data/faces/world").mkdir(parents=True)
    (shared / "data/faces/world/manifest.csv").write_text("")
    base = ["train", "--work", str(tmp_path / "work"), "--shared", str(shared)]
    assert CliRunner().invoke(cli.app, base).exit_code == 0
    recipe, kwargs = ran[-1]
    assert recipe is FACE_BLEND and kwargs["stop_early"] is False
    for n in (1, 2, 3):
        cfg = face_stages.stage_config(recipe, n, tmp_path, tmp_path / "w", tmp_path / "work")
        stage = FACE_BLEND.stage(n)
        assert (cfg.steps, cfg.lr_scale, cfg.donor_p, cfg.lowres_p) == \
            (stage.steps, stage.lr_scale, stage.donor_p, stage.lowres_p)
        assert (cfg.seed, cfg.precision, cfg.grade_p, cfg.blur_p, cfg.frozen_blocks) == \
            tuple(options[k].default for k in ("seed", "precision", "grade_p", "blur_p", "frozen_blocks"))
    assert CliRunner().invoke(cli.app, [*base, "--donor-p", "0.5", "--steps", "7", "--stop-early"]).exit_code == 0
    recipe, kwargs = ran[-1]
    assert recipe == FACE_BLEND.replace(stage1={"steps": 7}, stage2={"donor_p": 0.5}, stage3={"donor_p": 0.5})
    assert kwargs["stop_early"] is True

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    res = CliRunner().invoke(cli.app, [*base, "--init", str(weights), "--steps", "5"])
    assert res.exit_code == 2 and "--init skips stage 1" in res.output and len(ran) == 2


def _shipped_meta(name: str) -> dict:
    from safetensors import safe_open

    from deepscreen.config import MODELS_DIR

    with safe_open(str(MODELS_DIR / f"{name}.safetensors"), "pt") as f:
        return json.loads(f.metadata()["deepscreen"])


def test_the_recipes_are_how_the_shipped_weights_were_made():
    """The shipped weights' metadata (each stage records its settings) agrees with the recipe files: a recipe
    edited without retraining, or weights retrained without their recipe, fails here."""
    from deepscreen.training.recipe import VOICE

    face = _shipped_meta("face_blend")
    stage = FACE_BLEND.stage3  # the shipped file is stage 3's
    assert face["version"] == FACE_BLEND.version and face["prior_steps"] == FACE_BLEND.stage1.steps + \
        FACE_BLEND.stage2.steps and face["trained_steps"] == stage.steps
    cfg = face["config"]
    for key in ("pairs_per_batch", "lr", "head_lr", "map_weight", "val_every", "val_images", "seed", "threads",
                "precision", "grade_p", "blur_p", "frozen_blocks", "pool_size", "val_pool_size"):
        assert cfg[key] == getattr(FACE_BLEND, key), key
    for key in ("steps", "keep", "lr_scale", "donor_p", "lowres_p", "pool_pairs"):
        assert cfg[key] == getattr(stage, key), key
    voice, phase = _shipped_meta("voice"), _shipped_meta("voice_phase")
    assert (voice["steps"], voice["width"], voice["frontend"]) == (VOICE.steps, VOICE.width, VOICE.ensemble[0])
    assert (phase["version"], phase["frontend"]) == (VOICE.version, VOICE.ensemble[1])


def test_recipe_files_refuse_unknown_and_missing_keys(tmp_path):
    """A typo in a recipe fails when it is read, not by training with something else."""
    from deepscreen.training.recipe import RECIPES_DIR, VOICE, load_recipe

    text = (RECIPES_DIR / "voice.toml").read_text()
    assert load_recipe(RECIPES_DIR / "voice.toml") == VOICE
    for bad, match in ((text.replace("p_degrade =", "p_degrad ="), "missing p_degrade; unknown p_degrad"),
                       (text.replace("steps = 4000", 'steps = "4000"'), "steps = '4000' must be of type int"),
                       (text.replace('model = "voice"', 'model = "ears"'), "use face_blend or voice")):
        (tmp_path / "r.toml").write_text(bad)
        with pytest.raises(ValueError, match=match):
            load_recipe(tmp_path / "r.toml")


def test_frozen_early_blocks_stay_fixed_in_training(small_lfw, tmp_path):
    """`frozen_blocks`: the stem and the first blocks keep their weights and batch-norm statistics through a training
    step (a fixed feature extractor, in eval mode even while the model trains); the next block learns."""

    import torch

    from deepscreen.detectors.blendnet import BlendNet

    torch.manual_seed(0)
    model = BlendNet().freeze_early(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert not model.backbone._blocks[2].training and not model.backbone._bn0.training
    assert model.backbone._blocks[3].training and model.training
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    logit, boundary = model(torch.randn(4, 3, CROP_SIZE, CROP_SIZE))
    (logit.sum() + boundary.sum()).backward()
    opt.step()
    after = model.state_dict()
    fixed = ("backbone._conv_stem.", "backbone._bn0.", "backbone._blocks.0.", "backbone._blocks.1.",
             "backbone._blocks.2.")
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(fixed))
    assert not torch.equal(before["backbone._blocks.3._project_conv.weight"],
                           after["backbone._blocks.3._project_conv.weight"])
    stats = "backbone._blocks.3._bn2.running_mean"
    assert not torch.equal(before[stats], after[stats])
    assert all(p.requires_grad for p in BlendNet().freeze_early(0).parameters())

    cfg = TrainConfig(data=small_lfw, out=tmp_path / "w.safetensors", work=tmp_path / "work", steps=1,
                      pairs_per_batch=2, val_every=1, val_images=4, frozen_blocks=3)
    train(cfg, log=lambda _: None)
    assert FaceBlendDetector(weights=cfg.out).meta["config"]["frozen_blocks"] == 3

    res = _cli("train", "--frozen-blocks", "17")
    assert res.exit_code == 2 and res.stderr.strip() == \
        "deepscreen: error: --frozen-blocks 17: the backbone has 16 blocks"


def test_bfloat16_training_step(small_lfw, tmp_path):
    """`train --precision bfloat16`: steps under autocast give finite losses, the weights load and score, and the
    metadata says how they were trained; an unknown precision is a one-line error."""

    cfg = TrainConfig(data=small_lfw, out=tmp_path / "w.safetensors", work=tmp_path / "work", steps=3,
                      pairs_per_batch=2, val_every=3, val_images=4, precision="bfloat16")
    logs: list[str] = []
    train(cfg, log=logs.append)
    det = FaceBlendDetector(weights=cfg.out)
    assert det.meta["config"]["precision"] == det.meta["precision"] == "bfloat16" and det.meta["trained_steps"] == 3
    assert "arithmetic: bfloat16" in logs
    assert all(np.isfinite(v).all() for v in det.model.state_dict().values() if v.is_floating_point())
    crops = np.random.default_rng(0).integers(0, 256, (2, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    assert np.isfinite(det.score_faces(crops).logits).all()

    res = _cli("train", "--precision", "half")
    assert res.exit_code == 2 and res.stderr.strip() == \
        "deepscreen: error: --precision 'half': use one of auto, float32, bfloat16"


def test_training_arithmetic_follows_the_cpu(small_lfw, tmp_path):
    """The default, `auto`, trains in bfloat16 only where this CPU multiplies it natively (elsewhere it is
    emulated, ~4x slower than float32), and the weights' metadata says which arithmetic made them."""
    from deepscreen.detectors.blendnet import native_bfloat16

    assert TrainConfig(data=small_lfw, out=tmp_path, work=tmp_path).precision == "auto"
    cfg = TrainConfig(data=small_lfw, out=tmp_path / "w.safetensors", work=tmp_path / "work", steps=2,
                      pairs_per_batch=2, val_every=2, val_images=4)
    logs: list[str] = []
    train(cfg, log=logs.append)
    meta = FaceBlendDetector(weights=cfg.out).meta
    expected = "bfloat16" if native_bfloat16() else "float32"
    assert meta["config"]["precision"] == "auto" and meta["precision"] == expected
    assert any(line.startswith(f"arithmetic: {expected}") for line in logs)


def test_donor_forgeries_in_batches(small_lfw, tmp_path):
    """`train --donor-p`: forgeries with another person's region come in pairs with their real face, with a
    boundary map; the committed recipe (donor_p 0) draws the same random stream as before the option existed."""

    from deepscreen.training.data import load_faceset
    from deepscreen.training.train import _batch, _other_person

    faces = load_faceset(small_lfw, tmp_path / "lms.npz")
    rng = np.random.default_rng(0)
    assert all(faces.paths[_other_person(faces, 0, rng)].split("/")[0] != faces.paths[0].split("/")[0]
               for _ in range(20))
    x, y, maps = _batch(faces, np.random.default_rng(1), 3, donor_p=1.0)
    assert x.shape == (6, 3, CROP_SIZE, CROP_SIZE) and y.tolist() == [0, 1] * 3
    assert maps[0::2].sum() == 0 and all(maps[k].max() > 0.1 for k in (1, 3, 5)), [float(maps[k].max()) for k in (1, 3, 5)]
    a, b = np.random.default_rng(2), np.random.default_rng(2)
    x0 = _batch(faces, a, 2)[0]
    x1 = _batch(faces, b, 2, donor_p=0.0)[0]
    assert np.array_equal(x0.numpy(), x1.numpy()) and a.random() == b.random()

    res = _cli("train", "--donor-p", "1.5")
    assert res.exit_code == 2 and res.stderr.strip() == "deepscreen: error: --donor-p 1.5: must be between 0 and 1"
    res = _cli("train", "--lowres-p", "-0.1")
    assert res.exit_code == 2 and res.stderr.strip() == "deepscreen: error: --lowres-p -0.1: must be between 0 and 1"
    res = _cli("train", "--blur-p", "2")
    assert res.exit_code == 2 and res.stderr.strip() == "deepscreen: error: --blur-p 2.0: must be between 0 and 1"
    res = _cli("train", "--painters", "face_ae,stylegan")
    assert res.exit_code == 2 and res.stderr.strip() == ("deepscreen: error: --painters 'face_ae,stylegan': a "
                                                         "comma-separated list of realsr_df2k_x4, "
                                                         "realesrgan_x4plus, face_ae")
    res = _cli("train", "--channel-parts", "scale,blur")
    assert res.exit_code == 2 and res.stderr.strip() == ("deepscreen: error: --channel-parts 'scale,blur': a "
                                                         "comma-separated list of scale, codec, redetect, or none")
    res = _cli("train", "--pool-size", "0")
    assert res.exit_code == 2 and res.stderr.strip() == "deepscreen: error: --pool-size 0: must be at least 1"


def test_evaluate_on_synthesized_heldout_folder(small_lfw, tmp_path):
    import deepscreen

    n = write_forgery_folder(small_lfw, tmp_path / "sbi", "test", limit=0, seed=2, cache=tmp_path / "lms.npz")
    assert n >= 3
    assert len(list((tmp_path / "sbi" / "fake").iterdir())) == n
    result = evaluate_folder(deepscreen.Scanner(), tmp_path / "sbi", scores_csv=tmp_path / "scores.csv")
    assert result["files"] == 2 * n and result["errors"] == 0
    assert result["n_real"] + result["n_fake"] + result["abstained"] == 2 * n
    assert 0 <= result["auc"] <= 1 and "AUC" in format_metrics(result)
    assert len((tmp_path / "scores.csv").read_text().splitlines()) == 2 * n + 1
    real, fake = result["sources"]["real/."], result["sources"]["fake/."]  # files directly in real/ and fake/
    assert real["files"] == fake["files"] == n and real["fakes_caught"] is None and fake["real_flagged"] is None
    assert real["real_flagged"] == pytest.approx(result["fpr"]) and fake["fakes_caught"] == pytest.approx(result["tpr"])


def test_evaluate_reports_each_source_and_follows_symlinked_sets(tmp_path, lfw_face_path):
    """Per-source rates: real/<source> and fake/<source> subfolders, symlinked ones included, each counted with
    the bands in force; a file with no face is an abstention of its source, not a score."""
    import shutil

    import deepscreen
    from PIL import Image

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(lfw_face_path, elsewhere / "face.jpg")
    Image.new("RGB", (64, 64), (120, 120, 120)).save(elsewhere / "blank.png")
    (tmp_path / "eval" / "real").mkdir(parents=True)
    (tmp_path / "eval" / "fake" / "mine").mkdir(parents=True)
    (tmp_path / "eval" / "real" / "linked").symlink_to(elsewhere, target_is_directory=True)
    shutil.copy(lfw_face_path, tmp_path / "eval" / "fake" / "mine" / "same_face.jpg")
    result = evaluate_folder(deepscreen.Scanner(), tmp_path / "eval")
    linked = result["sources"]["real/linked"]
    assert linked["files"] == 2 and linked["abstained"] == 1 and linked["real_scored"] == 1
    assert result["sources"]["fake/mine"]["fake_scored"] == 1
    assert "real/linked" in format_metrics(result)


def test_face_swap_folder_names_its_donors_and_the_cli_checks_the_method(small_lfw, tmp_path):
    from PIL import Image

    out = tmp_path / "swaps"
    n = write_forgery_folder(small_lfw, out, "test", limit=0, seed=2, cache=tmp_path / "lms.npz", method="faceswap")
    assert n >= 3 and len(list((out / "fake").iterdir())) == len(list((out / "real").iterdir())) == n
    rows = (out / "forgeries.csv").read_text().splitlines()[1:]
    assert len(rows) == n
    for row in rows:
        name, kind, donor = row.split(",")
        assert kind in ("faceswap:face", "faceswap:inner")
        assert donor.split("/")[0] != name.split("__")[0]  # always another person's face
        real, fake = (np.asarray(Image.open(out / sub / name), dtype=int) for sub in ("real", "fake"))
        assert np.abs(real - fake).mean() > 1  # a changed face, not a re-save

    res = _cli("synthesize", str(tmp_path / "x"), "--method", "gan")
    assert res.exit_code == 2 and res.stderr.strip() == "deepscreen: error: --method 'gan': use one of sbi, faceswap"
    assert not (tmp_path / "x").exists()


def test_a_channel_pool_made_with_other_settings_is_refused(tmp_path):
    """A work folder's pool is reused only for the settings it was made with (seed, framing jitter, re-rendered
    faces): a run that asks for re-rendered forgeries never trains on a pool made without them."""
    from deepscreen.training.channel_pool import build_pool

    def never_called():
        raise AssertionError("the pool was refused before any face was loaded")

    made = tmp_path / "pool_a"
    made.mkdir()
    (made / "pool.json").write_text(json.dumps({"seed": 10, "jitter": True, "rerender_p": 0.0}))
    with pytest.raises(ValueError, match="made with"):
        build_pool(made, never_called, 8, seed=10, rerender_p=0.5)
    with pytest.raises(ValueError, match="made with"):  # a pool of the whole channel is not one without the codec
        build_pool(made, never_called, 8, seed=10, parts="scale,redetect")
    old = tmp_path / "pool_b"  # from before pool.json: chunks only
    old.mkdir()
    np.savez(old / "chunk0000.npz", real=np.zeros(1))
    with pytest.raises(ValueError, match="without re-rendered faces"):
        build_pool(old, never_called, 8, seed=10, rerender_p=0.5)
