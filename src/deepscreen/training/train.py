"""`deepscreen train`: fine-tune BlendNet on self-blended LFW faces, on the CPU, resumable.

Recipe: batches of 16 real faces + their 16 self-blended twins (pairs in one batch, as in SBI, so the only
difference the network can use is the blend), AdamW with a short warm-up and cosine decay, classification loss
plus the boundary-map loss. Every `val_every` steps: validation AUC on held-out people; the best state is kept.
At the end a Platt scaling is fitted on the validation people and everything is written to one safetensors file.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import PROJECT_ROOT
from ..detectors.blendnet import (BlendNet, file_weights_digest, load_weights, native_bfloat16, preprocess,
                                  save_weights)
from ..media.sniff import file_sha256
from . import metrics
from .allocator import keep_freed_memory
from .channel_pool import build_pool
from .data import FaceSet, heldout_pairs, load_faceset, make_pair
from .world_data import stage3_sources

MODEL_VERSION = "2.0"


@dataclass
class TrainConfig:
    data: Path
    out: Path
    work: Path
    steps: int = 6000  # one cosine cycle; the committed recipe is `train_recipe` (two cycles)
    # Stop after this share of the cycle, the learning rate still following the whole cycle's cosine (the short
    # recipe, train_recipe(stop_early=True), stops where v1.3's full cycles had their best validation).
    stop_at: float = 1.0
    # Which weights to write: "best" (the best validation AUC on self-blends, checked every `val_every` steps) or
    # "last". The short recipe's stage 2 keeps its last weights: stage 2's self-blend validation can peak early,
    # and such early checkpoints scored lower on human-made composites (models/face_blend.md).
    keep: str = "best"
    pairs_per_batch: int = 16
    lr: float = 3e-4
    head_lr: float = 1e-3
    map_weight: float = 1.0
    val_every: int = 200
    val_images: int = 400
    seed: int = 0
    threads: int = 2
    init: Path | None = None  # start from these weights (a second cosine cycle) instead of ImageNet
    lr_scale: float = 1.0  # multiplies both learning rates (a second cycle starts lower)
    # "bfloat16": forward/backward under CPU autocast (weights and optimiser stay float32); 1.2x faster steps
    # (1.3x on the network's share) where the CPU has native bfloat16 (AVX512-BF16, AMX), ~4x slower where it is
    # emulated. "auto": bfloat16 where native (how the committed weights were made), float32 elsewhere.
    precision: str = "auto"
    # Share of forgeries with a region pasted from another training person (synthesis.sbi.donor_blend) instead
    # of a self-blend; 0 in the committed recipe.
    donor_p: float = 0.0
    # Chance that each training crop (real or fake) gets a random global colour grade (synthesis.sbi.grade).
    grade_p: float = 0.0
    # Chance that a training pair is cut from small (30-70 %), recompressed copies of its photos (data.small_copy).
    lowres_p: float = 0.0
    # Chance that a training pair is cut from photos blurred alike, sigma 0.5-1.5 px (data.make_pair).
    blur_p: float = 0.0
    # Where the LFW landmarks are cached (default: WORK/lfw_landmarks.npz); the recipe's two stages share one.
    landmark_cache: Path | None = None
    # Stem + this many leading MBConv blocks keep their starting weights (BlendNet.freeze_early): 1.19x faster
    # steps at 3, at a cost on bar (a) (models/face_blend.md); 0 (the recipe) trains every layer.
    frozen_blocks: int = 0
    # Stage 3: this many of each batch's pairs come from the channel pool (training/channel_pool.py: world photos,
    # real video frames and LFW through the video channel); the rest are made on the fly from LFW as before.
    # 0: no pool. `shared` is where the world photos and videos are (../shared).
    pool_pairs: int = 0
    pool_size: int = 6000
    val_pool_size: int = 600
    shared: Path | None = None


def _pool_batch(pool: dict, rng: np.random.Generator, pairs: int):
    idx = rng.integers(0, len(pool["real"]), pairs)
    flip = rng.random(pairs) < 0.5  # mirror a pair together, its map with it
    crops, maps = [], []
    for i, f in zip(idx, flip):
        real, fake, fmap = pool["real"][i], pool["fake"][i], pool["maps"][i]
        if f:
            real, fake, fmap = real[:, ::-1], fake[:, ::-1], fmap[:, ::-1]
        crops += [real, fake]
        maps += [np.zeros_like(fmap), np.ascontiguousarray(fmap)]
    return (preprocess(np.stack(crops)), torch.tensor([0.0, 1.0] * pairs),
            torch.from_numpy(np.stack(maps))[:, None])


def _batch(faces: FaceSet, rng: np.random.Generator, pairs: int, donor_p: float = 0.0, grade_p: float = 0.0,
           lowres_p: float = 0.0, blur_p: float = 0.0):
    idx = rng.integers(0, len(faces.paths), pairs)
    crops, maps = [], []
    for i in idx:
        donor = None
        if donor_p > 0 and rng.random() < donor_p:
            j = _other_person(faces, i, rng)
            donor = (faces.image(j), faces.landmarks[j])
        real, fake, fmap = make_pair(faces.image(i), faces.landmarks[i], rng, donor=donor, grade_p=grade_p,
                                     lowres_p=lowres_p, blur_p=blur_p)
        crops += [real, fake]
        maps += [np.zeros_like(fmap), fmap]
    labels = torch.tensor([0.0, 1.0] * pairs)
    return preprocess(np.stack(crops)), labels, torch.from_numpy(np.stack(maps))[:, None]


def _other_person(faces: FaceSet, i: int, rng: np.random.Generator) -> int:
    person = faces.paths[i].split("/")[0]
    while True:  # a few draws at most: no person has more than a small share of LFW
        j = int(rng.integers(len(faces.paths)))
        if faces.paths[j].split("/")[0] != person:
            return j


def predict_logits(model: BlendNet, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            out.append(model(preprocess(crops[i:i + batch]))[0].numpy())
    return np.concatenate(out)


def _heldout(faces: FaceSet, seed: int, limit: int):
    reals, fakes = heldout_pairs(faces, seed, limit)
    return np.concatenate([reals, fakes]), np.r_[np.zeros(len(reals)), np.ones(len(fakes))]


def _portable(path: Path) -> str:
    """A path as the metadata records it: relative to the project, so weights do not carry this machine's layout."""
    return os.path.relpath(Path(path).resolve(), PROJECT_ROOT)


PRECISIONS = ("auto", "float32", "bfloat16")


def stop_step(steps: int, stop_at: float) -> int:
    """Where a cycle of `steps` stopped after share `stop_at` of it ends (at least one step)."""
    if not 0.0 < stop_at <= 1.0:
        raise ValueError(f"stop_at {stop_at}: must be in (0, 1]")
    return max(1, round(steps * stop_at))


def train(cfg: TrainConfig, log=print) -> dict:
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"unknown training precision {cfg.precision!r}; known: {', '.join(PRECISIONS)}")
    if cfg.keep not in ("best", "last"):
        raise ValueError(f"keep={cfg.keep!r}: use 'best' or 'last'")
    precision = cfg.precision if cfg.precision != "auto" else "bfloat16" if native_bfloat16() else "float32"
    log(f"arithmetic: {precision}" + (" (this CPU has no native bfloat16)" if cfg.precision == "auto" and
                                      precision == "float32" else ""))
    torch.set_num_threads(cfg.threads)
    if keep_freed_memory():  # a ~1.2x faster step (training/allocator.py)
        log("malloc: keeping freed memory for reuse")
    torch.manual_seed(cfg.seed)
    cfg.work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    faces = load_faceset(cfg.data, cfg.landmark_cache or cfg.work / "lfw_landmarks.npz",
                         progress=lambda n, total: log(f"landmarks {n}/{total}"))
    train_set, val_set = faces.split("train"), faces.split("val")
    log(f"faces: train {len(train_set.paths)} val {len(val_set.paths)} test {len(faces.split('test').paths)}")
    val_x, val_y = _heldout(val_set, seed=1, limit=cfg.val_images)
    pool = None
    if cfg.pool_pairs:  # validation then pools LFW and channel pairs: one ranking (and calibration) for both
        if cfg.shared is None:
            raise ValueError("pool_pairs needs `shared` (the folder with data/faces/world and data/video)")
        sources = partial(stage3_sources, cfg.shared, cfg.data, cfg.landmark_cache or cfg.work / "lfw_landmarks.npz",
                          cfg.work.parent / "world")
        stage3_sources(cfg.shared, cfg.data, cfg.landmark_cache or cfg.work / "lfw_landmarks.npz",
                       cfg.work.parent / "world", "train")  # landmarks once, here, before workers need them
        pool = build_pool(cfg.work / "pool_train", partial(sources, split="train"), cfg.pool_size, cfg.seed + 10,
                          log=log)
        val_pool = build_pool(cfg.work / "pool_val", partial(sources, split="val"), cfg.val_pool_size,
                              cfg.seed + 20, jitter=False, log=log)
        val_x = np.concatenate([val_x, val_pool["real"], val_pool["fake"]])
        val_y = np.r_[val_y, np.zeros(len(val_pool["real"])), np.ones(len(val_pool["fake"]))]
        log(f"channel pool: {len(pool['real'])} training pairs, {len(val_pool['real'])} validation pairs")

    if cfg.init is not None:  # a warm restart (SGDR, Loshchilov & Hutter 2017) from finished weights
        model, init_meta = load_weights(cfg.init)  # float16 on disk: a rounding the next steps absorb
        prior_steps = int(init_meta.get("trained_steps", 0)) + int(init_meta.get("prior_steps", 0))
        prior_minutes = float(init_meta.get("train_minutes", 0)) + float(init_meta.get("prior_minutes", 0))
        log(f"starting from {cfg.init} ({prior_steps} steps already)")
    else:
        model, prior_steps, prior_minutes = BlendNet(imagenet_init=True), 0, 0.0
    # Channels-last layout and float32 depthwise convolutions: a 1.3x faster step (BlendNet.depthwise_in_float32);
    # lean padding: fewer copies, the same function (BlendNet.lean_padding).
    model = model.freeze_early(cfg.frozen_blocks).depthwise_in_float32().lean_padding()
    model = model.to(memory_format=torch.channels_last)
    heads = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad]
    opt = torch.optim.AdamW([{"params": backbone, "lr": cfg.lr}, {"params": heads, "lr": cfg.head_lr}],
                            weight_decay=1e-4)
    base_lrs = [cfg.lr * cfg.lr_scale, cfg.head_lr * cfg.lr_scale]
    ckpt_path, best_path = cfg.work / "checkpoint.pt", cfg.work / "best.pt"
    step, best_auc, elapsed_before = 0, -1.0, 0.0
    rng = np.random.default_rng(cfg.seed)
    if ckpt_path.exists():  # resume where a stopped run left off
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, best_auc, elapsed_before = ck["step"], ck["best_auc"], ck["elapsed"]
        rng = np.random.default_rng([cfg.seed, step])
        log(f"resumed at step {step} (best val AUC {best_auc:.4f})")

    bce = nn.BCEWithLogitsLoss()
    t0, seen = time.time(), 0
    end = stop_step(cfg.steps, cfg.stop_at)
    while step < end:
        model.train()
        warm = min(1.0, (step + 1) / 100)
        decay = 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group, base in zip(opt.param_groups, base_lrs):
            group["lr"] = base * warm * decay
        x, y, maps = _batch(train_set, rng, cfg.pairs_per_batch - cfg.pool_pairs, cfg.donor_p, cfg.grade_p,
                            cfg.lowres_p, cfg.blur_p)
        if pool is not None:
            px, py, pmaps = _pool_batch(pool, rng, cfg.pool_pairs)
            x, y, maps = torch.cat([x, px]), torch.cat([y, py]), torch.cat([maps, pmaps])
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bfloat16"):
            logit, map_logit = model(x)
        loss_cls = bce(logit.float(), y)
        loss_map = bce(map_logit.float(), maps)
        loss = loss_cls + cfg.map_weight * loss_map
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seen += len(y)
        if step % 20 == 0:
            rate = seen / (time.time() - t0)
            log(f"step {step}/{cfg.steps} loss {loss_cls.item():.4f} map {loss_map.item():.4f} {rate:.1f} img/s")
        if step % cfg.val_every == 0 or step == end:
            val_auc = metrics.auc(val_y, predict_logits(model, val_x))
            if val_auc > best_auc:
                best_auc = val_auc
                torch.save(model.state_dict(), best_path)
            elapsed = elapsed_before + time.time() - started
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "best_auc": best_auc,
                        "elapsed": elapsed}, ckpt_path)
            log(f"step {step} val AUC {val_auc:.4f} (best {best_auc:.4f}) elapsed {elapsed / 60:.1f} min")

    if cfg.keep == "best":
        model.load_state_dict(torch.load(best_path))
    val_logits = predict_logits(model, val_x)
    a, b = metrics.fit_platt(val_y, val_logits)
    test_x, test_y = _heldout(faces.split("test"), seed=2, limit=None)
    test_p = metrics.sigmoid(a * predict_logits(model, test_x) + b)
    report = {
        "val": metrics.summary(val_y, metrics.sigmoid(a * val_logits + b)),
        "test_crops": metrics.summary(test_y, test_p),
        "minutes": (elapsed_before + time.time() - started) / 60,
    }
    meta = {
        "name": "face_blend", "version": MODEL_VERSION, "input_size": 160, "platt": [a, b],
        "trained_steps": step, "train_minutes": round(report["minutes"], 1), "precision": precision,
        "prior_steps": prior_steps, "prior_minutes": round(prior_minutes, 1),
        "init_sha256": file_sha256(cfg.init) if cfg.init is not None else None,
        "init_weights_sha256": file_weights_digest(cfg.init) if cfg.init is not None else None,
        "config": {k: _portable(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "val_auc": report["val"]["auc"], "test_crop_auc": report["test_crops"]["auc"],
    }
    report["sha256"] = save_weights(model, cfg.out, meta)
    report["weights_sha256"] = meta["weights_sha256"]  # the tensors alone: equal for runs that reached equal weights
    (cfg.work / "report.json").write_text(json.dumps(report, indent=2))
    log(json.dumps(report, indent=2))
    return report


# The committed recipe (models/face_blend.md): stage 1 learns self-blends from ImageNet weights; stage 2 is a
# second, lower cosine cycle (a warm restart) in which 30 % of the forgeries carry a region of another person's
# face (Face X-ray-style composites, which is what helps on human-made forgeries). Both cycles run to their end and
# each keeps its best validation checkpoint: how v1.3 was made.
STAGE1_STEPS, STAGE2_STEPS, STAGE2_LR_SCALE, STAGE2_DONOR_P = 6000, 1200, 0.3, 0.3
STAGE2_LOWRES_P = 0.0  # share of stage 2's pairs cut from small copies of their photos (data.small_copy)
# `stop_early`: v1.3's run kept step 4400 of stage 1 and step 600 of stage 2, so the short recipe stops there (the
# learning rate still follows the whole cycles) and stage 2 keeps its last weights: 5000 steps, 81 min end to end
# on 2026-12-02; (a) 0.950 / 0.962 / 0.945 on the three held-out draws, (b) 0.589 (v1.3: 0.951 / 0.960 / 0.949,
# 0.612). Shorter cycles (4400 + 600 that end at learning rate 0) and frozen early layers scored lower on (a).
STAGE1_STOP_AT, STAGE2_STOP_AT = 4400 / 6000, 600 / 1200


# Stage 3 (v2.0): a third, lower cycle from stage 2 in which 8 of each batch's 16 pairs come from the channel pool:
# real faces of other sources (world photos, real video frames) and LFW, with their forgeries, sent through the
# video channel and re-found by the scanner's face code; the other 8 pairs are stage 2's LFW pairs, so that what
# stages 1-2 learned is kept (12 of 16 from the pool ranked every held-out set lower: models/face_blend.md).
STAGE3_STEPS, STAGE3_LR_SCALE, STAGE3_POOL_PAIRS = 600, 0.3, 8


def train_recipe(data: Path, out: Path, work: Path, log=print, stage1_steps: int = STAGE1_STEPS,
                 stage2_steps: int = STAGE2_STEPS, donor_p: float = STAGE2_DONOR_P,
                 lr_scale: float = STAGE2_LR_SCALE, init: Path | None = None, stop_early: bool = False,
                 lowres_p: float = STAGE2_LOWRES_P, stage3_steps: int = STAGE3_STEPS, shared: Path | None = None,
                 init3: Path | None = None, **common) -> dict:
    """All stages in one call, each resumable: stage 1 (skipped when `init` weights are given, or when its
    work folder already holds a finished run) writes WORK/stage1/face_blend.safetensors, stage 2 starts from it and
    writes WORK/stage2/face_blend.safetensors, stage 3 (the channel pool from `shared`) starts from that and writes
    OUT. A stage count of 0 stops before that stage and writes OUT from the one before. `init3` skips stages 1-2:
    stage 3 from those weights. `stop_early` stops stages 1-2 where v1.3's run kept its checkpoint
    (STAGE1_STOP_AT, STAGE2_STOP_AT), and stage 2 then keeps its last weights."""
    stop1, stop2, keep2 = (STAGE1_STOP_AT, STAGE2_STOP_AT, "last") if stop_early else (1.0, 1.0, "best")
    cache = work / "lfw_landmarks.npz"
    blurred = f", {common['blur_p']:.0%} of pairs blurred" if common.get("blur_p") else ""
    if stage3_steps and shared is None:
        raise ValueError("stage 3 needs `shared` (data/faces/world and data/video); or set stage3_steps=0")
    report = None
    if init3 is None:
        if init is None:
            first_out = out if stage2_steps == 0 and stage3_steps == 0 else work / "stage1" / "face_blend.safetensors"
            if first_out != out and first_out.exists() and (work / "stage1" / "report.json").exists():
                log(f"stage 1 already done: {first_out}")
            else:
                log(f"stage 1: {stop_step(stage1_steps, stop1)} steps of a {stage1_steps}-step cycle, self-blends "
                    f"from ImageNet weights{blurred}")
                report = train(TrainConfig(data=data, out=first_out, work=work / "stage1", steps=stage1_steps,
                                           stop_at=stop1, landmark_cache=cache, **common), log=log)
            init = first_out
        if stage2_steps:
            second_out = out if stage3_steps == 0 else work / "stage2" / "face_blend.safetensors"
            if second_out != out and second_out.exists() and (work / "stage2" / "report.json").exists():
                log(f"stage 2 already done: {second_out}")
            else:
                log(f"stage 2: {stop_step(stage2_steps, stop2)} steps of a {stage2_steps}-step cycle from {init}, "
                    f"{donor_p:.0%} of forgeries from another person, learning rates x{lr_scale}"
                    + (f", {lowres_p:.0%} of pairs from small copies" if lowres_p else "") + blurred)
                report = train(TrainConfig(data=data, out=second_out, work=work / "stage2", steps=stage2_steps,
                                           stop_at=stop2, init=init, keep=keep2, lr_scale=lr_scale, donor_p=donor_p,
                                           lowres_p=lowres_p, landmark_cache=cache, **common), log=log)
            init = second_out
        if not stage3_steps:
            if init != out:  # stage 2 skipped too: OUT is stage 1's weights
                out.write_bytes(Path(init).read_bytes())
            return report or json.loads((Path(init).parent / "report.json").read_text())
        init3 = init
    log(f"stage 3: {stage3_steps} steps from {init3}, {STAGE3_POOL_PAIRS} of 16 pairs per batch through the video "
        f"channel (world photos, real video frames, LFW), learning rates x{STAGE3_LR_SCALE}")
    return train(TrainConfig(data=data, out=out, work=work / "stage3", steps=stage3_steps, init=init3,
                             lr_scale=STAGE3_LR_SCALE, donor_p=donor_p, landmark_cache=cache,
                             pool_pairs=STAGE3_POOL_PAIRS, shared=shared, **common), log=log)
