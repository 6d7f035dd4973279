"""Where training runs (`moderator train --device`) and its mixed precision on CUDA.

Stage 1 trains a small head on cached embeddings in fp32 on any device. Stage 2 fine-tunes the
encoders; on CUDA it runs under autocast: bf16 where the GPU supports it (Ampere and newer; no
loss scaling needed, bf16 has fp32's exponent range), else fp16 with a GradScaler. Weights and
optimizer state stay fp32 (autocast, not .half()), so checkpoints are the same files as on CPU.
On the CPU nothing changes: no autocast, no scaler.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

from moderator.model.errors import ModelLoadError
from moderator.model.inference import resolve_device
from moderator.training.errors import TrainingDeviceError

DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")  # as moderator.serving_settings.Device


def training_device(requested: str) -> torch.device:
    """ "auto" → the first CUDA device when torch sees one, else the CPU; cpu, cuda, cuda:N as
    given, refused with a TrainingDeviceError when torch cannot see that device."""
    if not DEVICE.match(requested):
        raise TrainingDeviceError(f"--device {requested!r}: expected auto, cpu, cuda or cuda:N")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingDeviceError(
            f"--device {requested}: torch sees no CUDA device here (torch {torch.__version__}, "
            f"CUDA build {torch.version.cuda or 'none'}); train with --device cpu (or auto), or "
            "on a machine with a GPU and a CUDA build of torch"
        )
    try:
        return torch.device(resolve_device(requested, num_gpus=torch.cuda.device_count()))
    except ModelLoadError as e:
        raise TrainingDeviceError(f"--device {requested}: {e}") from e


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The autocast dtype for stage 2 on device: None on the CPU or with AMP off."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """torch.autocast for dtype on device; nothing at all when dtype is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield


class LossStep:
    """backward + optimizer step; with fp16 the loss is scaled (GradScaler), else it is the
    plain `loss.backward(); optimizer.step()` of CPU training."""

    def __init__(self, optimizer: torch.optim.Optimizer, dtype: torch.dtype | None) -> None:
        self.optimizer = optimizer
        self.scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

    def __call__(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
