"""voice (since v1.3): the recording calibration in the weights' metadata is what the detector applies."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from deepscreen.config import MODELS_DIR
from deepscreen.detectors import Calibration
from deepscreen.detectors.dsp import sigmoid
from deepscreen.detectors.voice import VoiceDetector
from deepscreen.media.speech import SpeechSegment


def _without_recording_platt(src, dst):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        meta = json.loads(f.metadata()["deepscreen"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.pop("recording_platt", None)
    save_file(tensors, str(dst), metadata={"deepscreen": json.dumps(meta)})


def test_recording_calibration_is_read_from_the_weights_and_applied(tmp_path):
    (tmp_path / "shipped").mkdir()  # the first two branches as shipped (with the Whisper branch the fused windows
    for name in ("voice.safetensors", "voice_phase.safetensors"):  # come calibrated: test_voice_whisper.py)
        shutil.copy(MODELS_DIR / name, tmp_path / "shipped" / name)
    shipped = VoiceDetector(weights=tmp_path / "shipped" / "voice.safetensors")
    assert VoiceDetector().calibration == Calibration()
    a, b = shipped.calibration.slope, shipped.calibration.intercept
    assert (a, b) != (1.0, 0.0) and 0.5 < a < 1.5  # shipped since v1.3
    plain = tmp_path / "voice.safetensors"
    _without_recording_platt(MODELS_DIR / "voice.safetensors", plain)
    shutil.copy(MODELS_DIR / "voice_phase.safetensors", tmp_path / "voice_phase.safetensors")
    bare = VoiceDetector(weights=plain)
    assert bare.calibration == Calibration()
    rng = np.random.default_rng(0)
    t = np.arange(4 * 16000) / 16000
    x = (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) +
         0.01 * rng.standard_normal(len(t))).astype(np.float32)
    seg = [SpeechSegment(0.0, 4.0)]
    p_bare = bare.analyse(x, seg).probability
    p_shipped = shipped.analyse(x, seg).probability
    z = np.log(p_bare / (1 - p_bare))
    assert p_shipped == pytest.approx(float(sigmoid(a * z + b)), abs=1e-6)
