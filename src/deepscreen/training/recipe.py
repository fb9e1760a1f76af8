"""The training recipes: one TOML file per model (recipes/face_blend.toml, recipes/voice.toml), read into frozen
dataclasses. Training and the defaults of `deepscreen train` / `train-voice` are both taken from these objects, so
a recipe is written in one place; a flag makes a changed copy (`FaceRecipe.replace`, `dataclasses.replace`).

Light on purpose (tomllib and dataclasses only): the CLI reads it at start-up for its defaults."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

RECIPES_DIR = Path(__file__).with_name("recipes")
PRECISIONS = ("auto", "float32", "bfloat16")  # a face recipe's arithmetic ("auto": bfloat16 where the CPU has it)


class FlagError(ValueError):
    """A command-line value a recipe cannot take; the CLI prints it as one error line, before any work is done."""


@dataclass(frozen=True)
class FaceStage:
    """One cosine cycle of face training."""

    steps: int
    short_stop_at: float  # share of the cycle after which `--stop-early` stops it
    keep: str  # which weights the stage writes: "best" (validation) or "last"
    short_keep: str  # the same under `--stop-early`
    lr_scale: float  # multiplies both learning rates
    donor_p: float  # share of forgeries with a region of another person's face
    lowres_p: float  # share of pairs cut from small, recompressed copies of their photos
    pool_pairs: int  # pairs per batch from the channel pool (0: none)


@dataclass(frozen=True)
class FaceRecipe:
    model: str
    version: str
    threads: int
    precision: str
    seed: int
    pairs_per_batch: int
    lr: float
    head_lr: float
    weight_decay: float
    warmup_steps: int
    map_weight: float
    val_every: int
    val_images: int
    grade_p: float
    blur_p: float
    frozen_blocks: int
    pool_size: int
    val_pool_size: int
    pool_rerender_p: float
    pool_painters: str
    pool_channel_parts: str
    stage1: FaceStage
    stage2: FaceStage
    stage3: FaceStage

    def stage(self, n: int) -> FaceStage:
        return (self.stage1, self.stage2, self.stage3)[n - 1]

    def replace(self, **changes) -> FaceRecipe:
        """A copy with `changes`; a stage's are a dict of its fields, e.g. `stage2={"donor_p": 0.5}`."""
        for name in ("stage1", "stage2", "stage3"):
            if isinstance(changes.get(name), dict):
                changes[name] = replace(getattr(self, name), **changes[name])
        return replace(self, **changes)


@dataclass(frozen=True)
class VoiceRecipe:
    model: str
    version: str
    threads: int
    seed: int
    steps: int
    batch: int
    lr: float
    weight_decay: float
    warmup_steps: int
    checkpoint_every: int
    width: int
    p_degrade: float
    frontend: str
    head: str
    augment: str
    ensemble: tuple[str, ...]
    channels: tuple[str, ...]
    novelty_quantile: float


def _build(cls, values: dict, where: str):
    """`cls` from a TOML table, refusing a missing or unknown key and a value of the wrong type, so a typo in a
    recipe fails at start-up rather than training with a default."""
    names = {f.name: f for f in fields(cls)}
    missing, unknown = names.keys() - values.keys(), values.keys() - names.keys()
    problems = [f"{what} {', '.join(sorted(keys))}" for what, keys in (("missing", missing), ("unknown", unknown))
                if keys]
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))
    kinds = {"int": int, "float": (int, float), "str": str}
    out = {}
    for name, value in values.items():
        kind = names[name].type
        if kind == "FaceStage":
            value = _build(FaceStage, value, f"{where} [{name}]")
        elif kind == "tuple[str, ...]":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ValueError(f"{where}: {name} must be a list of strings")
            value = tuple(value)
        elif not isinstance(value, kinds[kind]) or isinstance(value, bool):
            raise ValueError(f"{where}: {name} = {value!r} must be of type {kind}")
        elif kind == "float":
            value = float(value)
        out[name] = value
    return cls(**out)


def load_recipe(path: Path) -> FaceRecipe | VoiceRecipe:
    """The recipe in a TOML file; its `model` key says which kind (face_blend or voice)."""
    with open(path, "rb") as f:
        values = tomllib.load(f)
    kind = {"face_blend": FaceRecipe, "voice": VoiceRecipe}.get(values.get("model"))
    if kind is None:
        raise ValueError(f"{path}: model = {values.get('model')!r}: use face_blend or voice")
    return _build(kind, values, str(path))


def record(recipe: FaceRecipe | VoiceRecipe) -> dict:
    """The recipe as the weights' metadata records it (JSON-ready)."""
    return asdict(recipe)


FACE_BLEND: FaceRecipe = load_recipe(RECIPES_DIR / "face_blend.toml")
VOICE: VoiceRecipe = load_recipe(RECIPES_DIR / "voice.toml")
