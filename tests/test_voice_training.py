"""`deepscreen train-voice` for real, on a tiny clip cache made here (no ../shared): a run starts, takes steps,
validates (the calibration on the validation speakers), writes weights with the metadata the scanner reads, and
loads its data once."""

from __future__ import annotations

import numpy as np
import pytest

from deepscreen.synthesis.voice import GENERATORS, UNSEEN
from deepscreen.training.voice_data import _pack, _save, split_of

RATE = 16000
# The keys voice weights carried before the recipe was data (models/voice_phase.safetensors has them all).
META_KEYS = {"name", "version", "width", "platt", "window_s", "frontend", "head", "steps", "generators"}


def _speakers() -> list[str]:
    """Two training speakers (phase novelty's folds need more than one), one for validation, one for the test."""
    want = {"train": 2, "val": 1, "test": 1}
    picked = []
    for i in range(999):
        s = f"spk{i}"
        if want[split_of(s)]:
            want[split_of(s)] -= 1
            picked.append(s)
    return picked


@pytest.fixture(scope="module")
def clip_cache(tmp_path_factory):
    """WORK/clips as `train-voice` leaves it: real clips (voiced tones) and, per generator, noisier copies, with
    their channel variants (three per clip, as build_channels writes them)."""
    work = tmp_path_factory.mktemp("voice_work")
    cache = work / "clips"
    cache.mkdir()
    rng = np.random.default_rng(0)
    speakers = _speakers()
    t = np.arange(int(2.5 * RATE)) / RATE
    real = [(0.3 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
            for f in rng.uniform(120, 300, len(speakers))]
    names = [f"u{i}" for i in range(len(speakers))]
    sources = {"real": real}
    for k, g in enumerate([*GENERATORS, *UNSEEN]):
        sources[g] = [(x + (0.02 + 0.01 * k) * rng.standard_normal(len(x))).astype(np.float32) for x in real]
    for name, clips in sources.items():
        _save(cache / f"{name}.npz", _pack(clips, speakers, names))
        _save(cache / f"{name}.channels.npz", _pack([c for c in clips for _ in range(3)],
                                                     [s for s in speakers for _ in range(3)],
                                                     [n for n in names for _ in range(3)]))
    return work


@pytest.mark.slow
def test_voice_training_run_steps_validates_and_writes_weights(clip_cache, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import deepscreen.training.voice_runs as runs
    from deepscreen import cli
    from deepscreen.detectors.voicenet import load_weights
    from deepscreen.training.recipe import VOICE

    builds = []
    real_build = runs.build
    monkeypatch.setattr(runs, "build", lambda *a, **k: builds.append(a) or real_build(*a, **k))
    out = tmp_path / "voice.safetensors"
    res = CliRunner().invoke(cli.app, ["train-voice", "--work", str(clip_cache), "--out", str(out), "--steps", "3"])
    assert res.exit_code == 0, res.output
    assert "step 3/3" in res.output and "voice detector, trained on all generators (3 steps" in res.output
    assert len(builds) == 1  # the clips are loaded once, for the run and its test table

    model, meta = load_weights(out)
    assert META_KEYS <= meta.keys() and meta["steps"] == 3 and meta["generators"] == list(GENERATORS)
    assert meta["version"] == VOICE.version and meta["recipe"]["steps"] == 3
    assert meta["recipe"]["ensemble"] == list(VOICE.ensemble) and len(meta["platt"]) == 2
    report = (clip_cache / "all" / "report.json").read_text()
    assert '"platt"' in report and '"real_fpr_at_0.5"' in report

    # A finished run resumes at its last step (no more steps to take), with the weights it wrote.
    from deepscreen.training.voice_config import VoiceTrainConfig
    from deepscreen.training.voice_train import load_data, setup

    cfg = VoiceTrainConfig(steps=3)
    run = setup(cfg, clip_cache / "all", *load_data(cfg, clip_cache / "clips"))
    assert run.step == 3
    assert all(a.equal(b) for a, b in zip(model.state_dict().values(), run.model.state_dict().values()))


@pytest.mark.slow
def test_ensemble_trains_both_models_and_scores_them_together(clip_cache, tmp_path):
    """`--ensemble`: the filterbank model and phase novelty (fitted on real speech alone, no steps), each written
    beside OUT, and the tables of each and of the combination from one pass."""
    from typer.testing import CliRunner

    from deepscreen import cli
    from deepscreen.detectors.voicenet import load_weights

    out = tmp_path / "voice.safetensors"
    res = CliRunner().invoke(cli.app, ["train-voice", "--work", str(clip_cache), "--out", str(out), "--steps", "2",
                                       "--ensemble"])
    assert res.exit_code == 0, res.output
    assert res.stdout.count("voice detector, ") == 3 and "phase novelty, fitted on real speech only" in res.stdout
    _, meta = load_weights(tmp_path / "voice_phase.safetensors")
    assert META_KEYS <= meta.keys() and meta["frontend"] == "phase" and meta["generators"] == []
    assert load_weights(out)[1]["frontend"] == "linear"


def test_voice_run_defaults_are_the_recipe():
    """`train-voice`'s defaults are the voice recipe's values, and a run of the recipe records it unchanged."""
    import typer

    from deepscreen import cli
    from deepscreen.training.recipe import VOICE
    from deepscreen.training.voice_config import VoiceTrainConfig
    from deepscreen.training.voice_runs import RECIPE_FLAGS

    options = {p.name: p for p in typer.main.get_command(cli.app).commands["train-voice"].params}
    for flag in RECIPE_FLAGS:
        assert options[flag].default is getattr(VOICE, flag), flag
    cfg = VoiceTrainConfig.of(VOICE)
    assert cfg == VoiceTrainConfig() and cfg.recipe() == VOICE
    assert VoiceTrainConfig(steps=5).recipe().steps == 5


@pytest.mark.parametrize("args,error", [
    (["--frontend", "cqcc"], "unknown front end 'cqcc'; known: linear, mel, spec, linear_if, wave, phase"),
    (["--head", "svm"], "unknown head 'svm'; known: linear, oc"),
    (["--augment", "rawboost"], "unknown augmentation 'rawboost'; known: none, eq"),
    (["--add", "piper"], "--add piper: not an optional generator; known: world_hnm, hifigan_v1, kokoro"),
    (["--exclude", "wavenet"], f"unknown generator(s) wavenet; known: {', '.join(GENERATORS)}"),
    (["--ensemble", "--frontend", "wave"], "--ensemble trains the front ends linear and phase; leave out --frontend"),
    (["--eval-only", "--out", "{work}/none.safetensors"], "{work}/none.safetensors: no such weights file"),
])
def test_train_voice_refuses_what_cannot_run_in_one_line(tmp_path, args, error):
    """Each is one error line and exit code 2, before anything is made in WORK."""
    from typer.testing import CliRunner

    from deepscreen import cli

    work = tmp_path / "work"
    res = CliRunner().invoke(cli.app, ["train-voice", "--work", str(work), *[a.format(work=work) for a in args]])
    assert res.exit_code == 2 and res.stderr.strip() == "deepscreen: error: " + error.format(work=work)
    assert not work.exists()
