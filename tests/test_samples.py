"""The README's first command: the demo media are made from held-out people and speakers, and the scan reads
each one the way the README says (forgeries flagged, originals authentic, no face / no speech inconclusive)."""

from __future__ import annotations

import pytest

from deepscreen.config import SHARED_DIR

from conftest import needs_data


@pytest.fixture(scope="module")
def sample_verdicts(tmp_path_factory):
    needs_data(SHARED_DIR / "data/speech/manifest.csv")
    needs_data(SHARED_DIR / "data/faces/lfw")
    from deepscreen import Scanner
    from deepscreen.synthesis.samples import make_samples

    paths = make_samples(tmp_path_factory.mktemp("samples"))
    scanner = Scanner()
    return {p.name: scanner.scan(p) for p in paths}


def test_every_sample_is_read_as_the_readme_says(sample_verdicts):
    labels = {name: v.label for name, v in sample_verdicts.items()}
    assert labels == {
        "real_photo.jpg": "authentic", "real_clip.mp4": "authentic", "real_speech.flac": "authentic",
        "blended_photo.jpg": "manipulated", "composite_photo.jpg": "manipulated",
        "swapped_halfway.mp4": "manipulated", "converted_voice.mp3": "manipulated", "dubbed_clip.mp4": "manipulated",
        "no_face.png": "inconclusive", "tone.wav": "inconclusive",
    }


def test_swap_is_placed_in_time_and_dub_is_cross_checked(sample_verdicts):
    swap = sample_verdicts["swapped_halfway.mp4"]
    assert swap.faces[0].peak_time_s >= 2.5  # the face is replaced from 2.5 s on
    early = [p.probability for p in swap.timeline if p.time_s < 2.3 and p.probability is not None]
    assert early and max(early) < 0.5
    dub = sample_verdicts["dubbed_clip.mp4"]
    assert dub.faces[0].probability < 0.25 and dub.voice.probability >= 0.5
    assert dub.cross_check and "voice sounds synthetic" in dub.cross_check
