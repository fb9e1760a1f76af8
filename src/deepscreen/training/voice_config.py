"""One voice training run's settings: the voice recipe's values (recipes/voice.toml) plus the generators it trains
on, and how they are read back from saved weights."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from ..synthesis.voice import GENERATORS, OPTIONAL, UNSEEN
from .recipe import VOICE, VoiceRecipe


@dataclass
class VoiceTrainConfig:
    steps: int = VOICE.steps
    batch: int = VOICE.batch
    lr: float = VOICE.lr
    width: int = VOICE.width
    exclude: list[str] = field(default_factory=list)  # generators held out of training (LOGO)
    add: list[str] = field(default_factory=list)  # OPTIONAL generators trained on as well (candidates)
    seed: int = VOICE.seed
    p_degrade: float = VOICE.p_degrade
    frontend: str = VOICE.frontend  # "linear", or an ablation: "spec" / "mel" / "linear_if" / "wave" / "phase"
    head: str = VOICE.head  # or "oc": one-class softmax (VoiceNet)
    augment: str = VOICE.augment  # or "eq": random equaliser + mild distortion on half the windows of both classes
    weight_decay: float = VOICE.weight_decay
    warmup_steps: int = VOICE.warmup_steps

    @classmethod
    def of(cls, recipe: VoiceRecipe, **run) -> VoiceTrainConfig:
        """The run of `recipe` with `run`'s own settings (exclude, add, or another front end)."""
        shared = {f.name: getattr(recipe, f.name) for f in fields(cls) if hasattr(recipe, f.name)}
        return cls(**{**shared, **run})

    def recipe(self, base: VoiceRecipe = VOICE) -> VoiceRecipe:
        """The recipe as this run used it (for the weights' metadata)."""
        return replace(base, **{f.name: getattr(self, f.name) for f in fields(self) if hasattr(base, f.name)})


def trained_generators(cfg: VoiceTrainConfig) -> list[str]:
    return [g for g in GENERATORS if g not in cfg.exclude] + list(cfg.add)  # --exclude takes GENERATORS only


def tested_generators(cfg: VoiceTrainConfig) -> list[str]:
    return list(dict.fromkeys([*GENERATORS, *cfg.add, *UNSEEN]))


def config_of(meta: dict) -> VoiceTrainConfig:
    """The training settings that matter for scoring, from the metadata of saved weights."""
    return VoiceTrainConfig(steps=meta["steps"], width=meta["width"], frontend=meta.get("frontend", "linear"),
                            head=meta.get("head", "linear"),
                            exclude=[g for g in GENERATORS if g not in meta["generators"]],
                            add=[g for g in meta["generators"] if g in OPTIONAL or g in UNSEEN])
