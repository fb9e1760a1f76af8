"""The face recipe's stages in one call (`deepscreen train`), each resumable: stage 1 learns self-blends from
ImageNet weights; stage 2 is a second, lower cycle (a warm restart) in which some forgeries carry a region of
another person's face; stage 3 a third, in which part of each batch comes through the video channel. The values
are the recipe's (recipes/face_blend.toml); `face_flags.recipe_from_flags` applies the command line's."""

from __future__ import annotations

import json
from pathlib import Path

from ..detectors.blendnet import BACKBONE_BLOCKS
from ..synthesis.channel import CHANNEL_PARTS, parse_parts
from .face_flags import FlagError, recipe_from_flags
from .recipe import FaceRecipe
from .train import TrainConfig, stop_step, train


def stage_config(recipe: FaceRecipe, n: int, data: Path, out: Path, work: Path, stop_early: bool = False,
                 **paths) -> TrainConfig:
    """Stage `n` of `recipe` as one training run writing `out`, its checkpoints in `work`; `paths`: init,
    landmark_cache, shared."""
    stage = recipe.stage(n)
    return TrainConfig(
        data=data, out=out, work=work, steps=stage.steps, stop_at=stage.short_stop_at if stop_early else 1.0,
        keep=stage.short_keep if stop_early else stage.keep, pairs_per_batch=recipe.pairs_per_batch, lr=recipe.lr,
        head_lr=recipe.head_lr, weight_decay=recipe.weight_decay, warmup_steps=recipe.warmup_steps,
        map_weight=recipe.map_weight, val_every=recipe.val_every, val_images=recipe.val_images, seed=recipe.seed,
        threads=recipe.threads, lr_scale=stage.lr_scale, precision=recipe.precision, donor_p=stage.donor_p,
        grade_p=recipe.grade_p, lowres_p=stage.lowres_p, blur_p=recipe.blur_p, frozen_blocks=recipe.frozen_blocks,
        pool_pairs=stage.pool_pairs, pool_size=recipe.pool_size, val_pool_size=recipe.val_pool_size,
        pool_rerender_p=recipe.pool_rerender_p, pool_painters=recipe.pool_painters,
        pool_channel_parts=recipe.pool_channel_parts, recipe=recipe,
        **paths)


def _describe(cfg: TrainConfig, n: int) -> str:
    what = {1: "self-blends from ImageNet weights",
            2: f"from {cfg.init}, {cfg.donor_p:.0%} of forgeries from another person",
            3: f"from {cfg.init}, {cfg.pool_pairs} of {cfg.pairs_per_batch} pairs per batch through the video "
               "channel (world photos, real video frames, LFW)"}[n]
    extras = [f"learning rates x{cfg.lr_scale}"] if n > 1 else []
    extras += [f"{cfg.lowres_p:.0%} of pairs from small copies"] if cfg.lowres_p else []
    extras += [f"{cfg.blur_p:.0%} of pairs blurred"] if cfg.blur_p else []
    extras += [f"{cfg.pool_rerender_p:.0%} of pool forgeries re-rendered ({cfg.pool_painters})"] \
        if n == 3 and cfg.pool_rerender_p else []
    extras += [f"training pool's channel: {cfg.pool_channel_parts or 'none'}"] \
        if n == 3 and parse_parts(cfg.pool_channel_parts) != parse_parts(CHANNEL_PARTS) else []
    return (f"stage {n}: {stop_step(cfg.steps, cfg.stop_at)} steps of a {cfg.steps}-step cycle, "
            + ", ".join([what, *extras]))


def train_recipe(recipe: FaceRecipe, data: Path, out: Path, work: Path, log=print, init: Path | None = None,
                 init3: Path | None = None, shared: Path | None = None, stop_early: bool = False) -> dict:
    """Every stage of `recipe`: stage 1 (skipped when `init` weights are given, or when its work folder already
    holds a finished run) writes WORK/stage1/face_blend.safetensors, stage 2 starts from it and writes
    WORK/stage2/..., stage 3 (the channel pool from `shared`) starts from that and writes OUT. A stage of 0 steps
    stops before it and OUT is the stage before's. `init3` skips stages 1-2: stage 3 from those weights.
    `stop_early` stops each stage at its `short_stop_at` and keeps its `short_keep` weights."""
    if recipe.stage3.steps and shared is None:
        raise ValueError("stage 3 needs `shared` (data/faces/world and data/video); or give stage 3 0 steps")
    common = dict(data=data, stop_early=stop_early, landmark_cache=work / "lfw_landmarks.npz")
    last = 3 if recipe.stage3.steps else 2 if recipe.stage2.steps else 1
    report = None
    if init3 is None:
        for n in (1, 2):
            if (n == 1 and init is not None) or not recipe.stage(n).steps:
                continue
            dest = out if n == last else work / f"stage{n}" / "face_blend.safetensors"
            if dest != out and dest.exists() and (dest.parent / "report.json").exists():
                log(f"stage {n} already done: {dest}")
            else:
                cfg = stage_config(recipe, n, out=dest, work=work / f"stage{n}", init=init, **common)
                log(_describe(cfg, n))
                report = train(cfg, log=log)
            init = dest
        if last < 3:
            if init != out:  # stage 2 skipped too (`init` given, 0 steps): OUT is those weights
                out.write_bytes(Path(init).read_bytes())
            return report or json.loads((Path(init).parent / "report.json").read_text())
        init3 = init
    cfg = stage_config(recipe, 3, out=out, work=work / "stage3", init=init3, shared=shared, **common)
    log(_describe(cfg, 3))
    return train(cfg, log=log)


def train_face(flags: dict, data: Path, out: Path, work: Path, init: Path | None = None, init3: Path | None = None,
               shared: Path | None = None, stop_early: bool = False) -> dict:
    """`deepscreen train`: the recipe with `flags` applied, every line of the log also appended to WORK/train.log.
    Raises FlagError (before any work) for flags that cannot run together or files that are not there."""
    recipe = recipe_from_flags(flags)
    if not 0 <= recipe.frozen_blocks <= BACKBONE_BLOCKS:
        raise FlagError(f"--frozen-blocks {recipe.frozen_blocks}: the backbone has {BACKBONE_BLOCKS} blocks")
    for weights in (init, init3):
        if weights is not None and not weights.is_file():
            raise FlagError(f"{weights}: no such weights file")
    if recipe.stage3.steps and not (shared is not None and (shared / "data/faces/world/manifest.csv").is_file()):
        raise FlagError(f"stage 3 needs {shared}/data/faces/world and data/video (--shared), or --stage3-steps 0")
    if init is not None and (recipe.stage2.steps == 0 or "steps" in flags):
        raise FlagError("--init skips stage 1 (stage 2 runs from those weights): set its length with "
                        "--stage2-steps (not 0), not --steps")
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "train.log", "a") as log_file:
        def log(msg: str) -> None:
            print(msg, flush=True)
            log_file.write(msg + "\n")
            log_file.flush()

        return train_recipe(recipe, data, out, work, log=log, init=init, init3=init3, shared=shared,
                            stop_early=stop_early)
