"""How a loaded model runs: device, and arithmetic (fp32, bf16/fp16 autocast, dynamic int8)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from moderator.config import PRECISIONS, Precision
from moderator.model.errors import ModelLoadError

__all__ = ["PRECISIONS", "InferenceOptions", "Precision", "resolve_device"]

ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass(frozen=True)
class InferenceOptions:
    """How a loaded model runs; anything but fp32 changes scores slightly, and so the version."""

    precision: Precision = "fp32"
    # A resolved torch device ("cpu", "cuda", "cuda:1"); see resolve_device for "auto".
    device: str = "cpu"
    # TF32 matmuls and convolutions on CUDA (Ampere and newer); no effect on the CPU.
    tf32: bool = False
    # torch.compile the encoders, with a warm-up at load so no real batch pays for it.
    compile: bool = False

    def version_suffix(self) -> str:
        """Appended to model_version so decisions record which arithmetic produced them."""
        return "" if self.precision == "fp32" else f"+{self.precision}"


def quantize_linear_int8(module: ModuleT) -> ModuleT:
    """Dynamic int8 quantisation of every nn.Linear (weights int8, activations per batch).

    Convolutions stay fp32: torch's dynamic quantisation covers Linear and RNN layers only.
    """
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch marks torch.ao.quantization deprecated in favour of torchao; it still works and
        # needs no extra package. Swap to torchao's quantize_ when torch drops it.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return module


def prepare_module(module: ModuleT, options: InferenceOptions) -> ModuleT:
    """Eval mode, and int8 Linear layers when asked for; bf16 is applied at call time."""
    module.eval()
    if options.precision == "int8":
        return quantize_linear_int8(module)
    return module


@contextlib.contextmanager
def precision_context(options: InferenceOptions) -> Iterator[None]:
    """Inference mode, plus bf16 autocast for precision bf16."""
    with torch.inference_mode():
        if options.precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                yield
        else:
            yield


def resolve_device(requested: str, num_gpus: float = 0.0) -> str:
    """"auto" → "cuda" when the replica was given a GPU (num_gpus > 0) and torch sees one,
    else "cpu"; an explicit CUDA device torch cannot see is a ModelLoadError at load time,
    never an error at the first batch."""
    if requested == "auto":
        return "cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device {requested!r}: torch sees no CUDA device here "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
                "use device auto or cpu, or give the replica a GPU (num_gpus)"
            )
        index = torch.device(requested).index or 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"device {requested!r}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
    return requested
