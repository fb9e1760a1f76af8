"""Shared fixtures: real faces from LFW and media files written on the fly into pytest's temp dirs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import deepscreen  # noqa: F401
except ImportError:  # running from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from deepscreen.config import SHARED_DIR  # noqa: E402

from media_factory import gradient, write_video  # noqa: E402

LFW_DIR = SHARED_DIR / "data/faces/lfw"
# Fixed people so results do not depend on directory order; the first that exists is used.
_LFW_PEOPLE = ["Aaron_Eckhart", "Colin_Powell", "George_W_Bush"]
# Fixtures that read ../shared: a test that uses one (directly or through another fixture) is marked needs_data,
# so `-m "not needs_data"` runs the tier that needs nothing beside the repository.
DATA_FIXTURES = {"lfw_face_path", "held_out", "speech", "small_lfw", "twin", "donor", "sample_verdicts"}


def needs_data(path: Path) -> Path:
    """`path` (under ../shared) if it exists; otherwise the test is skipped with the missing path named."""
    if not path.exists():
        pytest.skip(f"needs data not on this machine: {path} is missing (see README, Data)")
    return path


# Fixtures that train a model or make the demo media: every test using one is marked slow.
SLOW_FIXTURES = {"small_lfw", "sample_verdicts"}


def pytest_collection_modifyitems(items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if DATA_FIXTURES & used:
            item.add_marker(pytest.mark.needs_data)
        if SLOW_FIXTURES & used:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def lfw_face_path() -> Path:
    for person in _LFW_PEOPLE:
        p = LFW_DIR / person / f"{person}_0001.jpg"
        if p.is_file():
            return p
    needs_data(LFW_DIR / _LFW_PEOPLE[0] / f"{_LFW_PEOPLE[0]}_0001.jpg")


@pytest.fixture(scope="session")
def lfw_face(lfw_face_path) -> np.ndarray:
    """A 150x150 RGB uint8 LFW photo (deep-funneled: the face fills most of it)."""
    from PIL import Image

    with Image.open(lfw_face_path) as im:
        return np.array(im.convert("RGB"))


@pytest.fixture(scope="session")
def face_video(tmp_path_factory, lfw_face) -> Path:
    """2 s, 320x240, 25 fps H.264 MP4 (50 frames, no audio): the 150x150 LFW face moving left to right
    over a gradient. Frame i has the face's top-left corner at (x=8 + 3*i, y=45)."""
    h, w = lfw_face.shape[:2]
    frames = []
    for i in range(50):
        frame = gradient(240, 320, shift=2 * i)
        x = 8 + 3 * i
        frame[45 : 45 + h, x : x + w] = lfw_face
        frames.append(frame)
    return write_video(tmp_path_factory.mktemp("face_video") / "face.mp4", frames, fps=25)
