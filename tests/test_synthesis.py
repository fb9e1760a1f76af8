"""The generator side: self-blended images change the face only inside the mask, and the targets line up."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deepscreen.faces.align import CROP_SIZE, align_face
from deepscreen.faces.detect import FaceAnalyzer
from deepscreen.synthesis.faceswap import face_swap, mesh_triangles, pick_donor, shape_misfit, warp_piecewise
from deepscreen.synthesis.sbi import (boundary, degrade, donor_blend, grade, make_mask, self_blend,
                                     similarity_transform)
from deepscreen.training.data import MAP_SIZE, make_pair, small_copy, split_of


@pytest.fixture(scope="module")
def face(lfw_face):
    analyzer = FaceAnalyzer(max_faces=1)
    faces = analyzer(lfw_face)
    analyzer.close()
    assert len(faces) == 1 and faces[0].landmarks.shape == (468, 2)
    return lfw_face, faces[0].landmarks


def test_landmarks_land_on_the_face(face):
    rgb, lms = face
    h, w = rgb.shape[:2]
    # LFW crops are centred on the face: the landmark centre is near the image centre and inside it.
    assert np.all(lms.min(0) >= -5) and np.all(lms.max(0) <= [w + 5, h + 5])
    assert np.linalg.norm(lms.mean(0) - [w / 2, h / 2]) < 0.15 * w


@pytest.mark.parametrize("family", ["face", "inner", "regions"])
def test_blend_changes_only_inside_the_mask(face, family):
    rgb, lms = face
    blend = self_blend(rgb, lms, np.random.default_rng(3), family=family, ratio=1.0)
    assert blend.image.shape == rgb.shape and blend.image.dtype == np.uint8
    diff = np.abs(blend.image.astype(int) - rgb).max(2)
    outside = blend.mask < 1e-3
    assert outside.any() and (~outside).any()
    assert diff[outside].max() <= 1  # untouched apart from rounding
    assert diff[blend.mask > 0.9].mean() > 2  # the altered copy really differs
    assert blend.kind.startswith(family if family != "regions" else ("eye", "nose", "mouth"))


@pytest.fixture(scope="module")
def donor():
    """Another person's face from LFW (the first image of a different folder) and its landmarks."""
    from PIL import Image

    from conftest import LFW_DIR, needs_data

    needs_data(LFW_DIR)
    analyzer = FaceAnalyzer(max_faces=1)
    for path in sorted(LFW_DIR.glob("*/*_0001.jpg"))[5:]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        found = analyzer(rgb)
        if found and found[0].landmarks is not None:
            analyzer.close()
            return rgb, found[0].landmarks
    pytest.fail("no donor face found")


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 200, (50, 2))
    angle, scale, shift = 0.3, 1.2, np.array([10.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = similarity_transform(pts, pts @ rot.T + shift)
    assert np.allclose(m[:, :2], rot, atol=1e-4) and np.allclose(m[:, 2], shift, atol=1e-3)


def test_donor_blend_pastes_the_other_face_inside_the_mask_only(face, donor):
    rgb, lms = face
    other, other_lms = donor
    blend = donor_blend(rgb, lms, other, other_lms, np.random.default_rng(4), family="face")
    assert blend.image.shape == rgb.shape and blend.kind.startswith("donor:face")
    diff = np.abs(blend.image.astype(int) - rgb).max(2)
    assert diff[blend.mask < 1e-3].max() <= 1  # the target untouched outside the mask
    inside = blend.mask > 0.9
    assert diff[inside].mean() > 8  # another face, not a recoloured copy of this one
    # The donor was moved onto this face: its landmarks, carried by the transform, land near these ones.
    m = similarity_transform(other_lms, lms)
    moved = other_lms @ m[:, :2].T + m[:, 2]
    assert np.median(np.linalg.norm(moved - lms, axis=1)) < 0.1 * np.ptp(lms, axis=0).max()
    again = donor_blend(rgb, lms, other, other_lms, np.random.default_rng(4), family="face")
    assert np.array_equal(again.image, blend.image), "same seed, same forgery"


def test_piecewise_warp_of_a_face_onto_itself_is_the_face(face):
    """Every triangle of the mesh is carried onto itself: the warp is the identity on the face."""
    rgb, lms = face
    hull = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(lms.astype(np.int32)), 1)
    blank = np.zeros_like(rgb)
    warped = warp_piecewise(rgb, lms, lms, blank, mesh_triangles(lms))
    inside = cv2.erode(hull, np.ones((3, 3), np.uint8)) > 0
    assert np.abs(warped[inside] - rgb[inside]).mean() < 1.0
    outside = cv2.dilate(hull, np.ones((5, 5), np.uint8)) == 0
    assert np.all(warped[outside] == 0)  # the base image stays outside the triangulated face


def _high_pass(img: np.ndarray) -> np.ndarray:
    return cv2.Laplacian(cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY), cv2.CV_32F)


@pytest.mark.parametrize("region", ["face", "inner"])
def test_face_swap_puts_the_donor_face_into_this_face(face, donor, region):
    rgb, lms = face
    other, other_lms = donor
    blend = face_swap(rgb, lms, other, other_lms, np.random.default_rng(5), region=region)
    assert blend.image.shape == rgb.shape and blend.image.dtype == np.uint8 and blend.kind == f"faceswap:{region}"
    diff = np.abs(blend.image.astype(int) - rgb).max(2)
    ys, xs = np.nonzero(blend.mask)
    box = np.zeros_like(diff, bool)
    box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    assert diff[~box].max() == 0  # Poisson editing only solves inside the mask's box
    inside = blend.mask > 0.5
    assert diff[inside].mean() > 8
    # The fine detail inside is the donor's, warped into place, not this face's.
    warped = warp_piecewise(other, other_lms, lms, rgb, mesh_triangles(lms))
    detail = _high_pass(blend.image)[inside]
    from_donor = np.corrcoef(detail, _high_pass(warped)[inside])[0, 1]
    from_self = np.corrcoef(detail, _high_pass(rgb)[inside])[0, 1]
    assert from_donor > 0.5 and from_donor > from_self + 0.3, (from_donor, from_self)
    again = face_swap(rgb, lms, other, other_lms, np.random.default_rng(5), region=region)
    assert np.array_equal(again.image, blend.image), "same seed, same forgery"


def test_donor_is_the_face_in_the_closest_pose(face):
    _, lms = face
    rng = np.random.default_rng(0)
    angle = 0.2
    rot = 1.3 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    same_shape = lms @ rot.T + [40.0, -7.0]  # the same face, moved and scaled: a perfect fit
    other_shape = lms + rng.normal(0, 4.0, lms.shape)
    assert shape_misfit(lms, same_shape) < 1e-4 < shape_misfit(lms, other_shape)
    assert pick_donor(lms, [0, 1], np.stack([other_shape, same_shape])) == 1


def test_region_masks_are_smaller_than_face_masks(face):
    rgb, lms = face
    rng = np.random.default_rng(0)
    face_area = np.mean([make_mask(rgb.shape, lms, rng, "face")[0].mean() for _ in range(5)])
    region_area = np.mean([make_mask(rgb.shape, lms, rng, "regions")[0].mean() for _ in range(5)])
    assert region_area < face_area


def test_boundary_peaks_where_mask_is_half():
    mask = np.linspace(0, 1, 101, dtype=np.float32)[None]
    b = boundary(mask)
    assert b.argmax() == 50 and b[0, 0] == 0 and b[0, -1] == 0 and b.max() == pytest.approx(1.0)


def test_training_pair_shapes_and_determinism(face):
    rgb, lms = face
    a = make_pair(rgb, lms, np.random.default_rng(11))
    b = make_pair(rgb, lms, np.random.default_rng(11))
    real, fake, fmap = a
    assert real.shape == fake.shape == (CROP_SIZE, CROP_SIZE, 3)
    assert fmap.shape == (MAP_SIZE, MAP_SIZE) and 0 <= fmap.min() and fmap.max() <= 1
    assert all(np.array_equal(x, y) for x, y in zip(a, b)), "same seed, same pair"


def test_grade_changes_the_look_not_the_structure(face):
    """A colour grade is global: the colours move a lot, the edges and texture stay where they were."""
    rgb, lms = face
    crop, _ = align_face(rgb, lms)
    rng = np.random.default_rng(2)
    lap = lambda im: cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)  # noqa: E731
    shifts = []
    for _ in range(8):
        out = grade(crop, rng)
        assert out.shape == crop.shape and out.dtype == np.uint8
        assert np.corrcoef(lap(crop).ravel(), lap(out).ravel())[0, 1] > 0.8
        shifts.append(np.abs(out.astype(float).mean((0, 1)) - crop.astype(float).mean((0, 1))).max())
    assert np.median(shifts) > 5  # levels of the mean colour: a visible change of look


def test_grading_is_drawn_only_when_asked(face):
    """grade_p = 0 keeps the random stream of the recipes without grading; grade_p = 1 grades both crops."""
    rgb, lms = face
    plain = make_pair(rgb, lms, np.random.default_rng(4))
    zero = make_pair(rgb, lms, np.random.default_rng(4), grade_p=0.0)
    graded = make_pair(rgb, lms, np.random.default_rng(4), grade_p=1.0)
    assert all(np.array_equal(x, y) for x, y in zip(plain, zero))
    assert not np.array_equal(plain[0], graded[0]) and not np.array_equal(plain[1], graded[1])
    assert np.array_equal(plain[2], graded[2])  # the boundary map does not depend on the look


def test_small_copy_moves_the_landmarks_with_the_face(face):
    """A shrunk, recompressed copy aligns to the same crop as the photo, only softer: the landmarks were moved."""
    rgb, lms = face
    small, small_lms = small_copy(rgb, lms, 0.4, np.random.default_rng(0))
    assert small.shape == (round(rgb.shape[0] * 0.4), round(rgb.shape[1] * 0.4), 3) and small.dtype == np.uint8
    big, low = align_face(rgb, lms)[0], align_face(small, small_lms)[0]
    grey = [cv2.cvtColor(c, cv2.COLOR_RGB2GRAY).astype(np.float32) for c in (big, low)]
    assert np.corrcoef(cv2.GaussianBlur(grey[0], (0, 0), 2).ravel(), grey[1].ravel())[0, 1] > 0.99
    off = align_face(small, small_lms * 1.05)[0]  # landmarks 5 % off: a visibly worse match
    off_grey = cv2.cvtColor(off, cv2.COLOR_RGB2GRAY).astype(np.float32)
    assert np.corrcoef(cv2.GaussianBlur(grey[0], (0, 0), 2).ravel(), off_grey.ravel())[0, 1] < 0.97
    detail = [np.abs(cv2.Laplacian(g, cv2.CV_32F)).mean() for g in grey]
    assert detail[1] < 0.8 * detail[0]  # the enlarged small face has lost its fine texture


def test_low_resolution_pairs_are_drawn_only_when_asked(face):
    rgb, lms = face
    plain = make_pair(rgb, lms, np.random.default_rng(4))
    zero = make_pair(rgb, lms, np.random.default_rng(4), lowres_p=0.0)
    assert all(np.array_equal(x, y) for x, y in zip(plain, zero))
    real, fake, fmap = make_pair(rgb, lms, np.random.default_rng(4), lowres_p=1.0)
    assert real.shape == fake.shape == (CROP_SIZE, CROP_SIZE, 3) and fmap.shape == (MAP_SIZE, MAP_SIZE)
    assert fmap.max() > 0.2 and not np.array_equal(real, plain[0])


def test_blurred_pairs_are_softer_and_drawn_only_when_asked(face, monkeypatch):
    """blur_p = 0 keeps the random stream of the recipes without blur; blur_p = 1 blurs the real photo and its
    forgery alike (both crops lose fine detail) and leaves the seam where the boundary map says."""
    from deepscreen.training import data

    rgb, lms = face
    plain = make_pair(rgb, lms, np.random.default_rng(4))
    zero = make_pair(rgb, lms, np.random.default_rng(4), blur_p=0.0)
    assert all(np.array_equal(x, y) for x, y in zip(plain, zero))

    def detail(crop):
        return np.abs(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)).mean()

    # The post-processing (noise, JPEG) is drawn after the blur, so the two pairs would get different draws of it:
    # off here, to see the blur alone.
    monkeypatch.setattr(data, "degrade", lambda img, rng: np.ascontiguousarray(img))
    for seed in range(3):
        sharp = make_pair(rgb, lms, np.random.default_rng(seed))
        soft = make_pair(rgb, lms, np.random.default_rng(seed), blur_p=1.0)
        for k in (0, 1):  # real, fake
            assert detail(soft[k]) < 0.8 * detail(sharp[k]), (seed, k, detail(soft[k]), detail(sharp[k]))
        gap = [np.abs(pair[1].astype(np.float32) - pair[0]).mean() for pair in (sharp, soft)]
        assert gap[1] > 0.5 * gap[0] > 0, gap  # still a forgery of that face, not its blurred copy
        # Mirroring is among the later draws: the map is the plain pair's, or its mirror image.
        assert np.allclose(soft[2], sharp[2]) or np.allclose(soft[2], sharp[2][:, ::-1])


def test_degrade_keeps_shape_and_type(face):
    rgb, lms = face
    crop, _ = align_face(rgb, lms)
    rng = np.random.default_rng(5)
    for _ in range(10):
        out = degrade(crop, rng)
        assert out.shape == crop.shape and out.dtype == np.uint8


def test_split_is_by_person_and_stable():
    assert split_of("George_W_Bush") == split_of("George_W_Bush")
    buckets = [split_of(f"person_{i}") for i in range(2000)]
    share = {s: buckets.count(s) / len(buckets) for s in ("train", "val", "test")}
    assert 0.75 < share["train"] < 0.85 and 0.07 < share["val"] < 0.13 and 0.07 < share["test"] < 0.13


def test_a_large_face_is_area_averaged_not_aliased(face):
    """A face four times the crop's size, with pixel-level texture (sensor noise, fine print): the crop must look
    like the same face photographed small, not like the texture sampled every few pixels (aliasing reads as
    manipulation traces to a blending detector)."""
    rgb, lms = face
    big = cv2.resize(rgb, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC).astype(np.int16)
    big[::2, ::2] += 60  # a one-pixel checkerboard: averages away at any reduction, aliases under point sampling
    big[1::2, 1::2] += 60
    big = np.clip(big, 0, 255).astype(np.uint8)
    textured = np.clip(rgb.astype(np.int16) + 30, 0, 255).astype(np.uint8)  # what averaging leaves: +30
    small_crop, _ = align_face(textured, lms)
    big_crop, m = align_face(big, lms * 4)
    assert np.sqrt(abs(np.linalg.det(m[:, :2]))) < 0.5  # really a reduction
    point_sampled = cv2.warpAffine(big, m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
    averaged_err = np.abs(big_crop.astype(int) - small_crop).mean()
    sampled_err = np.abs(point_sampled.astype(int) - small_crop).mean()
    assert averaged_err < 4 and sampled_err > 3 * averaged_err


def test_an_enlarged_face_is_warped_directly(face):
    rgb, lms = face
    crop, m = align_face(rgb, lms)
    assert np.sqrt(abs(np.linalg.det(m[:, :2]))) > 1  # LFW faces are enlarged to the crop
    direct = cv2.warpAffine(rgb, m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert np.array_equal(crop, direct)


@pytest.mark.parametrize("codec", ["h264", "mpeg4", "vp9"])
def test_video_channel_treats_real_and_fake_alike(face, codec):
    """The channel scales both faces to the drawn width and sends them through one codec setting: outside the blend
    mask the two decoded pictures agree (the codec is the same function of the same pixels), the landmarks move with
    the scale, and the picture is really re-encoded (blocking changes pixels)."""
    from deepscreen.synthesis.channel import Channel, face_width, pass_channel

    rgb, lms = face
    blend = self_blend(rgb, lms, np.random.default_rng(3), family="face")
    low = {"h264": 34.0, "mpeg4": 14.0, "vp9": 46.0}[codec]
    ch = Channel(codec, low, face_width=60.0, motion=(2, 1), keep=2)
    real, fake, mask, moved = pass_channel(rgb, blend.image, blend.mask, lms, ch)
    assert real.shape == fake.shape and real.shape[:2] == mask.shape
    assert face_width(moved) == pytest.approx(60.0, abs=2.0)
    outside = cv2.erode((mask < 0.01).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    inside = mask > 0.5
    diff = np.abs(real.astype(int) - fake.astype(int)).mean(-1)
    assert diff[outside].mean() < diff[inside].mean() / 3  # alike where the forgery did not touch the face
    scaled = cv2.resize(rgb, real.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(scaled.astype(int) - real.astype(int)).mean() > 0.5  # really through the codec


def test_channel_parts_can_be_left_out_one_at_a_time(face):
    """For measuring what each part buys: without the codec the pair is only scaled (the pixels of a plain resize),
    without scaling the face keeps its size and only the codec changes pixels; unknown parts are refused."""
    from deepscreen.synthesis.channel import Channel, face_width, parse_parts, pass_channel, resize, scale_for

    rgb, lms = face
    blend = self_blend(rgb, lms, np.random.default_rng(3), family="face")
    ch = Channel("h264", 34.0, face_width=60.0, motion=(2, 1), keep=2)
    real, _, _, moved = pass_channel(rgb, blend.image, blend.mask, lms, ch, parse_parts("scale,redetect"))
    assert face_width(moved) == pytest.approx(60.0, abs=2.0)
    assert np.array_equal(real, resize(rgb, scale_for(lms, ch))[:real.shape[0], :real.shape[1]])
    real, _, mask, moved = pass_channel(rgb, blend.image, blend.mask, lms, ch, parse_parts("codec"))
    h, w = (s - s % 2 for s in rgb.shape[:2])
    assert real.shape == (h, w, 3) and mask.shape == (h, w) and np.allclose(moved, lms, atol=1e-4)
    assert np.abs(rgb[:h, :w].astype(int) - real.astype(int)).mean() > 0.5
    assert parse_parts("none") == frozenset()
    with pytest.raises(ValueError, match="unknown channel parts"):
        parse_parts("scale,blur")


def test_channel_pair_is_found_and_aligned_by_the_scanner_code(face):
    """A pool pair: two aligned crops and a boundary map, with the face re-found on the decoded real picture; far
    too small a face (10 px) is not found, as the scanner would not find it, and gives no pair."""
    from deepscreen.training.channel_pool import make_channel_pair
    from deepscreen.training.data import FaceSet

    rgb, lms = face

    class One(FaceSet):
        def image(self, i):
            return rgb

    faces = One(["a/x.jpg", "b/y.jpg"], np.stack([lms, lms]), None)
    analyzer = FaceAnalyzer(max_faces=1)
    try:
        pair = make_channel_pair([faces], [1.0], np.random.default_rng(0), analyzer, jitter=False, face_width=90.0)
        assert pair is not None
        real, fake, fmap, width = pair
        assert real.shape == fake.shape == (CROP_SIZE, CROP_SIZE, 3) and fmap.shape == (MAP_SIZE, MAP_SIZE)
        assert fmap.max() > 0.3 and 70 < width < 120
        assert make_channel_pair([faces], [1.0], np.random.default_rng(0), analyzer, face_width=10.0) is None
    finally:
        analyzer.close()


def test_rerender_paints_the_face_box_and_nothing_else(face):
    """A re-rendered face (shrunk and drawn back by a GAN up-sampler) differs inside the box around the face, is
    untouched outside it, and keeps the face's coarse picture while its fine texture is the generator's."""
    from deepscreen.synthesis.sbi import rerender

    rgb, lms = face
    rgb, lms = cv2.copyMakeBorder(rgb, 150, 150, 150, 150, cv2.BORDER_REFLECT), lms + 150  # room around the face
    out = rerender(rgb.astype(np.float32), lms, np.random.default_rng(0))
    assert out.shape == rgb.shape
    diff = np.abs(out - rgb).max(2)
    changed = diff > 0
    ys, xs = np.nonzero(changed)
    box = (xs.min(), ys.min(), xs.max(), ys.max())
    c, size = lms.mean(0), float(np.ptp(lms, axis=0).max())
    assert box[0] >= c[0] - size and box[2] <= c[0] + size  # the box is about the face
    assert diff[~changed].max() == 0 and changed.mean() < 0.5
    assert diff[changed].mean() > 2  # really repainted, not copied
    inner = lms[:, 1].min(), lms[:, 1].max(), lms[:, 0].min(), lms[:, 0].max()
    crop = (slice(int(inner[0]), int(inner[1])), slice(int(inner[2]), int(inner[3])))
    def grey(im):
        return np.clip(im, 0, 255).astype(np.uint8)[crop].mean(2).astype(np.float32)

    def corr(a, b):
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    # The same face (its coarse picture kept), with fine texture of the generator's own (the camera's is gone).
    coarse = [cv2.GaussianBlur(grey(im), (0, 0), 3) for im in (out, rgb)]
    fine = [cv2.Laplacian(grey(im), cv2.CV_32F) for im in (out, rgb)]
    assert corr(*coarse) > 0.9 and corr(*fine) < 0.6


def test_rerendered_forgeries_are_drawn_only_when_asked(face, donor):
    """At rerender_p 0 a blend draws nothing more from the generator than before (recipes without it are
    unchanged); at 1 every self-blend and donor blend is re-rendered and says so in its kind."""
    rgb, lms = face
    plain = self_blend(rgb, lms, np.random.default_rng(5))
    again = self_blend(rgb, lms, np.random.default_rng(5), rerender_p=0.0)
    assert np.array_equal(plain.image, again.image) and plain.kind == again.kind
    assert "+rr" in self_blend(rgb, lms, np.random.default_rng(5), rerender_p=1.0).kind
    painted = self_blend(rgb, lms, np.random.default_rng(5), rerender_p=1.0)
    assert "+rr" in painted.kind and not np.array_equal(painted.image, plain.image)
    swap = donor_blend(rgb, lms, *donor, np.random.default_rng(5), rerender_p=1.0)
    assert swap.kind.startswith("donor:") and "+rr" in swap.kind


def test_face_autoencoder_learns_faces_and_paints_only_the_face_box(face, tmp_path):
    """The swap-decoder painter (synthesis.face_ae): training lowers its reconstruction loss on face boxes, it
    writes safetensors the painter loads, and re-rendering with it changes the box round the face and nothing
    else, as the GAN painters do; blends made with it say so in their kind."""
    import torch

    from deepscreen.synthesis.face_ae import box_tensor, face_box, load_painter
    from deepscreen.synthesis.sbi import rerender
    from deepscreen.training.face_ae_train import loss_fn, train

    rgb, lms = face
    rgb, lms = cv2.copyMakeBorder(rgb, 150, 150, 150, 150, cv2.BORDER_REFLECT), lms + 150
    rng = np.random.default_rng(0)
    boxes = torch.stack([box_tensor(rgb, face_box(rgb.shape, lms + rng.normal(0, 3, 2), h))
                         for h in np.linspace(0.75, 0.95, 8)])
    (tmp_path / "painter").mkdir()
    torch.save((boxes * 255).round().to(torch.uint8), tmp_path / "painter/boxes.pt")  # the cache train() reads

    def loss_of(model):
        with torch.no_grad():
            return float(loss_fn(model(boxes), boxes))

    torch.manual_seed(0)
    from deepscreen.synthesis.face_ae import FaceAE

    before = loss_of(FaceAE())
    weights = train(tmp_path / "painter", steps=80, batch=4, lr=1e-3, threads=1, log=lambda m: None)
    assert weights.is_file() and loss_of(load_painter(weights)) < 0.7 * before

    out = rerender(rgb.astype(np.float32), lms, np.random.default_rng(1), painters=(f"face_ae:{weights}",))
    changed = np.abs(out - rgb).max(2) > 0
    ys, xs = np.nonzero(changed)
    c, size = lms.mean(0), float(np.ptp(lms, axis=0).max())
    assert xs.min() >= c[0] - size and xs.max() <= c[0] + size and changed.mean() < 0.5
    blend = self_blend(rgb, lms, np.random.default_rng(5), rerender_p=1.0, painters=(f"face_ae:{weights}",))
    assert "+rr" in blend.kind
