"""`deepscreen train`'s flags as changes to the face recipe. Light (no torch): the CLI reads its defaults from here
at start-up."""

from __future__ import annotations

from typing import NamedTuple

from .recipe import FACE_BLEND, PRECISIONS, FaceRecipe, FlagError

__all__ = ["FLAGS", "Flag", "FlagError", "flag_default", "recipe_from_flags"]


class Flag(NamedTuple):
    fields: tuple[str, ...]  # the recipe fields it sets ("stage2.donor_p": that stage's)
    help: str


# Every `deepscreen train` flag that changes a value of the recipe. The CLI's defaults are read through this table
# (`flag_default`), so a flag's default and what training runs without the flag are one value of the recipe.
FLAGS: dict[str, Flag] = {
    "steps": Flag(("stage1.steps",), "Stage 1: length of its learning-rate cycle in optimiser steps of 32 crops (16 "
                                     "real + 16 self-blended) from ImageNet weights."),
    "stage2_steps": Flag(("stage2.steps",), "Stage 2: length of a second, lower cycle with composites from other "
                                            "people; 0 stops after stage 1."),
    "stage3_steps": Flag(("stage3.steps",), "Stage 3: length of a third cycle in which part of each batch comes "
                                            "through the video channel from world photos and real video frames; 0 "
                                            "stops after stage 2."),
    "seed": Flag(("seed",), "Seed of every random draw (batches, forgeries, new layers)."),
    "lr_scale": Flag(("stage2.lr_scale",), "Stage 2's learning rates, as a multiple of stage 1's."),
    "precision": Flag(("precision",), "auto: bfloat16 where the CPU has it natively (AVX512-BF16, AMX; autocast, how "
                                      "the committed weights were made), float32 elsewhere (emulated bfloat16 is ~4x "
                                      "slower); or bfloat16 / float32."),
    "donor_p": Flag(("stage2.donor_p", "stage3.donor_p"), "Stages 2 and 3: share of forgeries with a region from "
                                                          "another person's face instead of a self-blend."),
    "grade_p": Flag(("grade_p",), "Chance that each training crop, real or fake, gets a random global colour grade."),
    "blur_p": Flag(("blur_p",), "Chance that a training pair is cut from its photos blurred alike (sigma 0.5-1.5 px), "
                                "in every stage."),
    "lowres_p": Flag(("stage2.lowres_p",), "Stage 2: share of training pairs cut from small (30-70 %), recompressed "
                                           "copies of their photos."),
    "rerender_p": Flag(("pool_rerender_p",), "Stage 3: chance that a channel-pool forgery's face is re-rendered "
                                             "by a GAN up-sampler first (a generator's texture, as in neural swaps)."),
    "painters": Flag(("pool_painters",), "Stage 3: what re-renders those faces, comma-separated: realsr_df2k_x4, "
                                         "realesrgan_x4plus (GAN up-samplers), face_ae (a face autoencoder trained "
                                         "first, as a swap model's decoder)."),
    "channel_parts": Flag(("pool_channel_parts",), "Stage 3: which parts of the video channel the training pool's "
                                                   "pairs go through, comma-separated: scale (face to 50-250 px), "
                                                   "codec (encoded and decoded), redetect (landmarks found again "
                                                   "on the decoded picture); fewer only to measure what each "
                                                   "buys; none: the photo post-processing only."),
    "pool_size": Flag(("pool_size",), "Stage 3: training pairs in the channel pool (made once into WORK; a smaller "
                                      "pool is the first chunks of a larger one)."),
    "frozen_blocks": Flag(("frozen_blocks",), "Keep the stem and this many leading blocks of the backbone at their "
                                              "starting weights: cheaper steps (0 trains every layer)."),
}
_SHARES = ("donor_p", "grade_p", "blur_p", "lowres_p", "rerender_p")


def _get(recipe: FaceRecipe, path: str):
    obj = recipe
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def flag_default(flag: str, recipe: FaceRecipe = FACE_BLEND):
    """The recipe's value behind a `deepscreen train` flag (its first field, where it sets several)."""
    return _get(recipe, FLAGS[flag].fields[0])


def recipe_from_flags(flags: dict, recipe: FaceRecipe = FACE_BLEND) -> FaceRecipe:
    """`recipe` with the given flags (name -> value, only those on the command line) applied; the same object
    when none is given. Raises FlagError for a value training cannot take."""
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if name == "precision" and value not in PRECISIONS:
            raise FlagError(f"{flag} {value!r}: use one of {', '.join(PRECISIONS)}")
        if name == "pool_size" and value < 1:
            raise FlagError(f"{flag} {value}: must be at least 1")
        if name in _SHARES and not 0.0 <= value <= 1.0:
            raise FlagError(f"{flag} {value}: must be between 0 and 1")
        if name == "painters":
            known = ("realsr_df2k_x4", "realesrgan_x4plus", "face_ae")  # sbi.RERENDERERS + the face autoencoder
            names = [n.strip() for n in value.split(",")]
            if not all(names) or set(names) - set(known):
                raise FlagError(f"{flag} {value!r}: a comma-separated list of {', '.join(known)}")
        if name == "channel_parts":
            known = ("scale", "codec", "redetect")  # synthesis.channel.CHANNEL_PARTS (av and cv2 are not light)
            names = [n.strip() for n in value.split(",")]
            if value != "none" and (not all(names) or set(names) - set(known)):
                raise FlagError(f"{flag} {value!r}: a comma-separated list of {', '.join(known)}, or none")
    if not flags:
        return recipe
    top, stages = {}, {}
    for name, value in flags.items():
        for path in FLAGS[name].fields:
            if "." in path:
                stage, key = path.split(".")
                stages.setdefault(stage, {})[key] = value
            else:
                top[path] = value
    return recipe.replace(**top, **stages)
