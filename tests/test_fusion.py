"""Tracking, fusion rules, thresholds, metrics and calibration: small inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from deepscreen.cli import exit_code
from deepscreen.config import Thresholds
from deepscreen.faces.track import FaceTracker
from deepscreen.detectors import Calibration, DetectorResult, FaceLimits
from deepscreen.fusion import (MIN_VIDEO_FRAMES, SHARPNESS_CAP, face_observations, file_probability, fuse_tracks,
                               summarise, track_logit)
from deepscreen.prepared import FaceCrop
from deepscreen.training import metrics
from deepscreen.verdict import Verdict, percent


def test_tracker_follows_two_people_and_starts_a_third():
    tr = FaceTracker()
    ids = [tr.update(0, [(0, 0, 100, 100), (300, 0, 400, 100)])]
    ids.append(tr.update(10, [(330, 5, 430, 105), (40, 0, 140, 100)]))  # both moved, listed in the other order
    ids.append(tr.update(20, [(60, 0, 160, 100), (700, 300, 740, 340)]))  # one left, a small new face appeared
    assert ids[0] == [0, 1]
    assert ids[1] == [1, 0]
    assert ids[2] == [0, 2]


def test_track_logit_is_a_median_weighted_by_detail_over_half_the_track():
    assert track_logit([5.0]) == 5.0
    assert track_logit([1.0, 3.0, 2.0]) == 2.0
    # Isolated spikes of a real face do not convict it; a stretch of half the track does (a spliced-in swap).
    real = [-3.0, 6.0, -2.5, -3.0, 7.0, -2.0, -3.5, 5.0]
    assert track_logit(real) < 0
    spliced = [-3.0, -2.0, -3.0, -2.5, 4.0, 5.0, 3.0, 4.5]
    assert track_logit(spliced) == 4.0  # lower middle of the last four: no tie convicts
    # Sharp frames outweigh soft ones whose scores jumped; detail saturates at SHARPNESS_CAP.
    assert track_logit([6.0, 7.0, -1.0, -2.0, -3.0, -2.5], [5, 5, 150, 150, 150, 150]) == -1.0
    assert track_logit([6.0, -2.0, -2.0], [SHARPNESS_CAP * 10, SHARPNESS_CAP, SHARPNESS_CAP]) == -2.0


def _explain(p, bands, heatmap=None, landmarks_crop=None):
    return "looks pasted" if p >= bands.manipulated else "weak signs" if p >= bands.suspicious else "clean"


def _fuse(logits, widths, sharpness, bands=Thresholds(), video=False):
    """fuse_tracks on one face track with these raw scores, box widths and sharpness, from a detector with
    plain sigmoid calibration and known limits."""
    crops = [FaceCrop(0, i, i / 4, (10, 10, 10 + w, 10 + w), np.zeros((4, 4, 3), np.uint8), None, s)
             for i, (_, w, s) in enumerate(zip(logits, widths, sharpness))]
    result = DetectorResult("face_blend", "test", Calibration(), np.array(logits, float),
                            np.zeros((len(logits), 10, 10)),
                            limits=FaceLimits(min_width=60, min_sharpness=20, note="(held-out AUC under 0.75 there)"),
                            explain=_explain)
    return fuse_tracks(crops, face_observations(crops, result), result, bands, video=video)


def test_faces_too_small_or_soft_are_not_judged_and_say_why():
    tracks, ev = _fuse([6.0], [40], [100.0])
    assert tracks[0].probability is None and "too small to judge: 40 px wide, under 60 px" in tracks[0].abstained
    assert "held-out AUC" in ev[0].explanation and ev[0].score is None
    tracks, _ = _fuse([6.0], [120], [8.0])
    assert "too soft or compressed" in tracks[0].abstained
    assert file_probability(tracks) is None
    assert "none that could be judged" in summarise("image", None, tracks, Thresholds(), 1)
    from deepscreen.report.html import _face_card

    card = _face_card(tracks[0])
    assert "not judged: too soft" in card and "likely manipulated" not in card
    # Soft frames are left out of a video track; the sharp ones decide.
    tracks, _ = _fuse([8.0, 8.0, -3.0, -2.0, -4.0], [120] * 5, [5, 5, 90, 90, 90], video=True)
    assert tracks[0].probability == pytest.approx(float(metrics.sigmoid(-3.0)))
    # A face judged in fewer than MIN_VIDEO_FRAMES frames of a video abstains.
    tracks, _ = _fuse([8.0] * (MIN_VIDEO_FRAMES - 1), [120] * 5, [90] * 5, video=True)
    assert "too few frames" in tracks[0].abstained


def test_evidence_words_follow_the_bands_in_force():
    """With --threshold 0.8 a face at p 0.6 is suspicious, and its evidence must not say it looks pasted."""
    bands = Thresholds(suspicious=0.5, manipulated=0.8)
    z = float(np.log(0.6 / 0.4))
    tracks, ev = _fuse([z], [120], [90.0], bands)
    assert bands.label(tracks[0].probability) == "suspicious" and "weak signs" in ev[0].explanation


def test_voice_words_follow_the_bands_in_force():
    """The recording is the mean of its most suspicious half of windows, calibrated by the result's Calibration;
    its words, like a face's, follow the bands the verdict is labelled with."""
    from deepscreen.detectors.voice import VoiceDetector
    from deepscreen.fusion import voice_analysis
    from deepscreen.media.speech import SpeechSegment
    from deepscreen.prepared import Sound

    z = float(np.log(0.6 / 0.4))
    result = DetectorResult("voice", "test", Calibration(), np.array([z, z, z - 4]),
                            spans_s=np.array([[0.0, 2.0], [1.0, 3.0], [2.0, 4.0]]), explain=VoiceDetector.explain)
    sound = Sound(4 * 16000, [SpeechSegment(0.0, 4.0)])
    default = voice_analysis(result, sound)
    strict = voice_analysis(result, sound, Thresholds(suspicious=0.5, manipulated=0.8))
    assert default.probability == pytest.approx(0.6) and "sounds synthetic" in default.explanation
    assert strict.probability == default.probability and "weak signs" in strict.explanation
    assert len(default.timeline) == 4 and default.timeline[0].probability == pytest.approx(0.6)


def test_threshold_bands():
    t = Thresholds()
    assert [t.label(p) for p in (None, 0.0, 0.249, 0.25, 0.49, 0.5, 1.0)] == [
        "inconclusive", "authentic", "authentic", "suspicious", "suspicious", "manipulated", "manipulated"]



@pytest.mark.parametrize("suspicious, manipulated", [(0.6, 0.4), (0.0, 0.5), (0.25, 1.5), (float("nan"), 0.5)])
def test_bands_out_of_order_are_refused(suspicious, manipulated):
    with pytest.raises(ValueError, match="bands must satisfy"):
        Thresholds(suspicious=suspicious, manipulated=manipulated)


def test_percent_never_claims_certainty():
    assert [percent(p) for p in (0.0, 0.005, 0.01, 0.015, 0.5, 0.99, 0.994, 1.0)] == [
        "<1%", "<1%", "1%", "2%", "50%", "99%", ">99%", ">99%"]
    assert percent(None) == percent(float("nan")) == "n/a"

def test_exit_codes():
    v = lambda label: Verdict("x", "", "image", None, label, "")
    assert exit_code([v("authentic"), v("inconclusive")]) == 0
    assert exit_code([v("authentic"), v("suspicious")]) == 1
    assert exit_code([v("manipulated"), v("error")]) == 2


def test_auc_and_eer_known_values():
    y = np.array([0, 0, 0, 1, 1, 1])
    assert metrics.auc(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]) == 1.0
    assert metrics.auc(y, [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]) == 0.0
    assert metrics.auc(y, [0.5] * 6) == 0.5
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]) == 0.75
    e, _ = metrics.eer(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert e == 0.0
    rng = np.random.default_rng(0)
    yy = rng.integers(0, 2, 4000)
    assert abs(metrics.auc(yy, rng.random(4000)) - 0.5) < 0.03


def test_platt_recovers_a_known_calibration():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, 20000)
    y = (rng.random(20000) < metrics.sigmoid(0.5 * z - 1.0)).astype(int)
    a, b = metrics.fit_platt(y, z)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(-1.0, abs=0.08)
    assert metrics.ece(y, metrics.sigmoid(a * z + b)) < 0.02
    assert metrics.ece(y, metrics.sigmoid(z)) > 0.1  # the raw scores were over-confident


def test_platt_stays_finite_on_separable_data():
    """29 real and 29 fake scores with no overlap: 0/1 targets would give an infinite slope."""
    z = np.r_[np.linspace(-9, -1, 29), np.linspace(1, 9, 29)]
    y = np.r_[np.zeros(29), np.ones(29)]
    a, b = metrics.fit_platt(y, z)
    p = metrics.sigmoid(a * z + b)
    assert 0 < a < 10 and abs(b) < 1
    assert 0.95 < p[-1] < 0.999 and 0.001 < p[0] < 0.05  # confident, never certain


def test_summary_counts_and_rates():
    s = metrics.summary([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    assert (s["n_real"], s["n_fake"]) == (2, 2)
    assert s["accuracy"] == 0.5 and s["tpr"] == 0.5 and s["fpr"] == 0.5
