"""Fine-tune BlendNet on self-blended LFW faces, on the CPU, resumable: one stage of the face recipe (the stages
are run by training/face_stages.py; the recipe is recipes/face_blend.toml).

A stage is `setup` (data, model, optimiser, resume), `take_step` (a batch of real faces and their self-blended
twins, pairs in one batch as in SBI, so the only difference the network can use is the blend; AdamW with a short
warm-up and cosine decay; classification plus boundary-map loss), `validate` every `val_every` steps (AUC on
held-out people; the best state is kept) and `finish` (Platt scaling fitted on the validation people, the test
crops scored, everything written to one safetensors file).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..config import PROJECT_ROOT
from ..detectors.blendnet import (BlendNet, file_weights_digest, load_weights, native_bfloat16, preprocess,
                                  save_weights)
from ..media.io import file_sha256
from . import metrics
from .allocator import keep_freed_memory
from .channel_pool import build_pool
from .data import FaceSet, heldout_pairs, load_faceset, make_pair
from .recipe import FACE_BLEND, PRECISIONS, FaceRecipe, record
from .world_data import stage3_sources

_STAGE1 = FACE_BLEND.stage1


@dataclass
class TrainConfig:
    """One stage's settings. The defaults are the recipe's stage 1 (recipes/face_blend.toml); `face_stages.
    stage_config` cuts every stage from a recipe."""

    data: Path
    out: Path
    work: Path
    steps: int = _STAGE1.steps  # the cosine cycle's length
    # Stop after this share of the cycle, the learning rate still following the whole cycle's cosine.
    stop_at: float = 1.0
    # Which weights to write: "best" (the best validation AUC, checked every `val_every` steps) or "last".
    keep: str = _STAGE1.keep
    pairs_per_batch: int = FACE_BLEND.pairs_per_batch
    lr: float = FACE_BLEND.lr
    head_lr: float = FACE_BLEND.head_lr
    weight_decay: float = FACE_BLEND.weight_decay
    warmup_steps: int = FACE_BLEND.warmup_steps
    map_weight: float = FACE_BLEND.map_weight
    val_every: int = FACE_BLEND.val_every
    val_images: int = FACE_BLEND.val_images
    seed: int = FACE_BLEND.seed
    threads: int = FACE_BLEND.threads
    init: Path | None = None  # start from these weights (a warm restart) instead of ImageNet
    lr_scale: float = _STAGE1.lr_scale  # multiplies both learning rates (a later cycle starts lower)
    # "bfloat16": forward/backward under CPU autocast (weights and optimiser stay float32); 1.2x faster steps
    # where the CPU has native bfloat16 (AVX512-BF16, AMX), ~4x slower where it is emulated. "auto": bfloat16
    # where native, float32 elsewhere.
    precision: str = FACE_BLEND.precision
    donor_p: float = _STAGE1.donor_p  # share of forgeries with a region of another person (sbi.donor_blend)
    grade_p: float = FACE_BLEND.grade_p  # chance of a random global colour grade per crop (sbi.grade)
    lowres_p: float = _STAGE1.lowres_p  # chance that a pair is cut from small copies (data.small_copy)
    blur_p: float = FACE_BLEND.blur_p  # chance that a pair is cut from photos blurred alike (data.make_pair)
    # Where the LFW landmarks are cached (default: WORK/lfw_landmarks.npz); a recipe's stages share one.
    landmark_cache: Path | None = None
    # Stem + this many leading MBConv blocks keep their starting weights (BlendNet.freeze_early).
    frozen_blocks: int = FACE_BLEND.frozen_blocks
    # This many of each batch's pairs come from the channel pool (training/channel_pool.py: world photos, real
    # video frames and LFW through the video channel); the rest are made on the fly from LFW. 0: no pool.
    # `shared` is where the world photos and videos are (../shared).
    pool_pairs: int = _STAGE1.pool_pairs
    pool_size: int = FACE_BLEND.pool_size
    val_pool_size: int = FACE_BLEND.val_pool_size
    # The chance that a pool forgery's pasted face is first re-rendered by a GAN up-sampler (sbi.rerender).
    pool_rerender_p: float = FACE_BLEND.pool_rerender_p
    # What re-renders them, comma-separated: GAN up-samplers (sbi.RERENDERERS) and/or "face_ae", the face
    # autoencoder (synthesis.face_ae) that the stage trains first into WORK/../painter.
    pool_painters: str = FACE_BLEND.pool_painters
    # Which parts of the video channel the training pool's pairs go through (synthesis.channel.CHANNEL_PARTS; fewer
    # only to measure what each buys). The validation pool always takes the whole channel, so runs compare.
    pool_channel_parts: str = FACE_BLEND.pool_channel_parts
    shared: Path | None = None
    recipe: FaceRecipe = field(default=FACE_BLEND, repr=False)  # what the stage was cut from (metadata)


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


def _heldout(faces: FaceSet, seed: int, limit: int | None):
    reals, fakes = heldout_pairs(faces, seed, limit)
    return np.concatenate([reals, fakes]), np.r_[np.zeros(len(reals)), np.ones(len(fakes))]


def _portable(path: Path) -> str:
    """A path as the metadata records it: relative to the project, so weights do not carry this machine's layout."""
    return os.path.relpath(Path(path).resolve(), PROJECT_ROOT)


def stop_step(steps: int, stop_at: float) -> int:
    """Where a cycle of `steps` stopped after share `stop_at` of it ends (at least one step)."""
    if not 0.0 < stop_at <= 1.0:
        raise ValueError(f"stop_at {stop_at}: must be in (0, 1]")
    return max(1, round(steps * stop_at))


@dataclass
class FaceRun:
    """A stage in progress: what `setup` made, and what `take_step` and `validate` move on."""

    cfg: TrainConfig
    log: Callable[[str], None]
    precision: str  # the arithmetic in use ("auto" resolved)
    faces: FaceSet  # every split: `train_set` is its training people
    train_set: FaceSet
    val_x: np.ndarray
    val_y: np.ndarray
    pool: dict | None
    model: BlendNet
    opt: torch.optim.Optimizer
    rng: np.random.Generator
    end: int  # the step the stage stops after
    prior_steps: int = 0  # of the weights it started from
    prior_minutes: float = 0.0
    step: int = 0
    best_auc: float = -1.0
    elapsed_before: float = 0.0  # seconds trained before a resume
    started: float = field(default_factory=time.time)
    seen: int = 0  # crops since this process started (the speed in the log)

    @property
    def checkpoint(self) -> Path:
        return self.cfg.work / "checkpoint.pt"

    @property
    def best(self) -> Path:
        return self.cfg.work / "best.pt"


def _check(cfg: TrainConfig) -> None:
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"unknown training precision {cfg.precision!r}; known: {', '.join(PRECISIONS)}")
    if cfg.keep not in ("best", "last"):
        raise ValueError(f"keep={cfg.keep!r}: use 'best' or 'last'")
    stop_step(cfg.steps, cfg.stop_at)


def _channel_pools(cfg: TrainConfig, log) -> tuple[dict, dict]:
    """The channel pool's training and validation pairs (built once into WORK, then read back)."""
    if cfg.shared is None:
        raise ValueError("pool_pairs needs `shared` (the folder with data/faces/world and data/video)")
    lfw_cache = cfg.landmark_cache or cfg.work / "lfw_landmarks.npz"
    sources = partial(stage3_sources, cfg.shared, cfg.data, lfw_cache, cfg.work.parent / "world")
    sources(split="train")  # landmarks once, here, before the workers need them
    painters = _painters(cfg, log)
    pool = build_pool(cfg.work / "pool_train", partial(sources, split="train"), cfg.pool_size, cfg.seed + 10,
                      workers=cfg.threads, log=log, rerender_p=cfg.pool_rerender_p, painters=painters,
                      parts=cfg.pool_channel_parts)
    val_pool = build_pool(cfg.work / "pool_val", partial(sources, split="val"), cfg.val_pool_size, cfg.seed + 20,
                          jitter=False, workers=cfg.threads, log=log, rerender_p=cfg.pool_rerender_p,
                          painters=painters)
    return pool, val_pool


def _painters(cfg: TrainConfig, log) -> tuple[str, ...]:
    """The pool's painters as sbi.rerender takes them; "face_ae" is trained first (resumable) on the training
    split's faces, its landmarks shared with the pool (WORK/../painter, beside WORK/../world)."""
    names = tuple(n.strip() for n in cfg.pool_painters.split(",") if n.strip())
    if not cfg.pool_rerender_p or "face_ae" not in names:
        return names
    from .face_ae_train import PAINTER_STEPS, train as train_painter

    weights = train_painter(cfg.work.parent / "painter", PAINTER_STEPS, seed=cfg.seed, threads=cfg.threads,
                            lfw_cache=cfg.landmark_cache or cfg.work / "lfw_landmarks.npz", log=log)
    return tuple(f"face_ae:{weights}" if n == "face_ae" else n for n in names)


def _start_model(cfg: TrainConfig, log) -> tuple[BlendNet, int, float]:
    """The network to train (from ImageNet or `init`) and the steps and minutes already in `init`."""
    if cfg.init is None:
        return BlendNet(imagenet_init=True), 0, 0.0
    model, init_meta = load_weights(cfg.init)  # float16 on disk: a rounding the next steps absorb
    prior_steps = int(init_meta.get("trained_steps", 0)) + int(init_meta.get("prior_steps", 0))
    prior_minutes = float(init_meta.get("train_minutes", 0)) + float(init_meta.get("prior_minutes", 0))
    log(f"starting from {cfg.init} ({prior_steps} steps already)")  # a warm restart (SGDR)
    return model, prior_steps, prior_minutes


def setup(cfg: TrainConfig, log=print) -> FaceRun:
    """Everything a stage needs before its first step; resumes from WORK/checkpoint.pt where one is."""
    _check(cfg)
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
        pool, val_pool = _channel_pools(cfg, log)
        val_x = np.concatenate([val_x, val_pool["real"], val_pool["fake"]])
        val_y = np.r_[val_y, np.zeros(len(val_pool["real"])), np.ones(len(val_pool["fake"]))]
        log(f"channel pool: {len(pool['real'])} training pairs, {len(val_pool['real'])} validation pairs")

    model, prior_steps, prior_minutes = _start_model(cfg, log)
    # Channels-last layout and float32 depthwise convolutions: a 1.3x faster step (BlendNet.depthwise_in_float32);
    # lean padding: fewer copies, the same function (BlendNet.lean_padding).
    model = model.freeze_early(cfg.frozen_blocks).depthwise_in_float32().lean_padding()
    model = model.to(memory_format=torch.channels_last)
    heads = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad]
    opt = torch.optim.AdamW([{"params": backbone, "lr": cfg.lr}, {"params": heads, "lr": cfg.head_lr}],
                            weight_decay=cfg.weight_decay)
    run = FaceRun(cfg, log, precision, faces, train_set, val_x, val_y, pool, model, opt,
                  np.random.default_rng(cfg.seed), stop_step(cfg.steps, cfg.stop_at), prior_steps, prior_minutes,
                  started=started)
    if run.checkpoint.exists():  # resume where a stopped run left off
        ck = torch.load(run.checkpoint, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        run.step, run.best_auc, run.elapsed_before = ck["step"], ck["best_auc"], ck["elapsed"]
        run.rng = np.random.default_rng([cfg.seed, run.step])
        log(f"resumed at step {run.step} (best val AUC {run.best_auc:.4f})")
    return run


_bce = nn.BCEWithLogitsLoss()


def take_step(run: FaceRun) -> tuple[float, float]:
    """One optimiser step; returns the classification and boundary-map losses."""
    cfg, model = run.cfg, run.model
    model.train()
    warm = min(1.0, (run.step + 1) / cfg.warmup_steps)
    decay = 0.5 * (1 + math.cos(math.pi * run.step / cfg.steps))
    for group, base in zip(run.opt.param_groups, (cfg.lr, cfg.head_lr)):
        group["lr"] = base * cfg.lr_scale * warm * decay
    x, y, maps = _batch(run.train_set, run.rng, cfg.pairs_per_batch - cfg.pool_pairs, cfg.donor_p, cfg.grade_p,
                        cfg.lowres_p, cfg.blur_p)
    if run.pool is not None:
        px, py, pmaps = _pool_batch(run.pool, run.rng, cfg.pool_pairs)
        x, y, maps = torch.cat([x, px]), torch.cat([y, py]), torch.cat([maps, pmaps])
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", torch.bfloat16, enabled=run.precision == "bfloat16"):
        logit, map_logit = model(x)
    loss_cls = _bce(logit.float(), y)
    loss_map = _bce(map_logit.float(), maps)
    run.opt.zero_grad(set_to_none=True)
    (loss_cls + cfg.map_weight * loss_map).backward()
    run.opt.step()
    run.step += 1
    run.seen += len(y)
    return loss_cls.item(), loss_map.item()


def validate(run: FaceRun) -> float:
    """Validation AUC now; keeps the best state and writes the checkpoint a stopped run resumes from."""
    val_auc = metrics.auc(run.val_y, predict_logits(run.model, run.val_x))
    if val_auc > run.best_auc:
        run.best_auc = val_auc
        torch.save(run.model.state_dict(), run.best)
    elapsed = run.elapsed_before + time.time() - run.started
    torch.save({"model": run.model.state_dict(), "opt": run.opt.state_dict(), "step": run.step,
                "best_auc": run.best_auc, "elapsed": elapsed}, run.checkpoint)
    run.log(f"step {run.step} val AUC {val_auc:.4f} (best {run.best_auc:.4f}) elapsed {elapsed / 60:.1f} min")
    return val_auc


def finish(run: FaceRun) -> dict:
    """Calibrate (Platt on the validation people), score the test people's crops, write the weights and report."""
    cfg, model = run.cfg, run.model
    if cfg.keep == "best":
        model.load_state_dict(torch.load(run.best))
    val_logits = predict_logits(model, run.val_x)
    a, b = metrics.fit_platt(run.val_y, val_logits)
    test_x, test_y = _heldout(run.faces.split("test"), seed=2, limit=None)
    test_p = metrics.sigmoid(a * predict_logits(model, test_x) + b)
    report = {
        "val": metrics.summary(run.val_y, metrics.sigmoid(a * val_logits + b)),
        "test_crops": metrics.summary(test_y, test_p),
        "minutes": (run.elapsed_before + time.time() - run.started) / 60,
    }
    settings = {k: v for k, v in asdict(cfg).items() if k != "recipe"}
    meta = {
        "name": cfg.recipe.model, "version": cfg.recipe.version, "input_size": 160, "platt": [a, b],
        "trained_steps": run.step, "train_minutes": round(report["minutes"], 1), "precision": run.precision,
        "prior_steps": run.prior_steps, "prior_minutes": round(run.prior_minutes, 1),
        "init_sha256": file_sha256(cfg.init) if cfg.init is not None else None,
        "init_weights_sha256": file_weights_digest(cfg.init) if cfg.init is not None else None,
        "config": {k: _portable(v) if isinstance(v, Path) else v for k, v in settings.items()},
        "recipe": record(cfg.recipe),
        "val_auc": report["val"]["auc"], "test_crop_auc": report["test_crops"]["auc"],
    }
    report["sha256"] = save_weights(model, cfg.out, meta)
    report["weights_sha256"] = meta["weights_sha256"]  # the tensors alone: equal for runs that reached equal weights
    (cfg.work / "report.json").write_text(json.dumps(report, indent=2))
    run.log(json.dumps(report, indent=2))
    return report


def train(cfg: TrainConfig, log=print) -> dict:
    """One stage, start to end (or from where a stopped run left off); returns its report."""
    run = setup(cfg, log)
    t0 = time.time()
    while run.step < run.end:
        loss_cls, loss_map = take_step(run)
        if run.step % 20 == 0:
            log(f"step {run.step}/{cfg.steps} loss {loss_cls:.4f} map {loss_map:.4f} "
                f"{run.seen / (time.time() - t0):.1f} img/s")
        if run.step % cfg.val_every == 0 or run.step == run.end:
            validate(run)
    return finish(run)
