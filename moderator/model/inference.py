"""CPU inference precision: fp32, bf16 (autocast) or dynamic int8 (Linear layers)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
from torch import nn

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "int8")
ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass(frozen=True)
class InferenceOptions:
    """How a loaded model runs; anything but fp32 changes scores slightly, and so the version."""

    precision: Precision = "fp32"

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
