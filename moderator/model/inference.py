"""How a loaded model runs: device, and arithmetic (fp32, bf16/fp16 autocast, dynamic int8).

CPU: fp32, bf16 (autocast) or int8 (dynamic, Linear layers). CUDA: fp32, fp16 or bf16 (autocast),
optionally TF32 matmuls/convolutions. Either: optionally torch.compile'd encoders. Every choice
that changes the arithmetic shows in model_version (see InferenceOptions.version_suffix).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from moderator.model.errors import ModelLoadError
from moderator.serving_settings import PRECISIONS, Precision

__all__ = [
    "PRECISIONS",
    "InferenceOptions",
    "Precision",
    "resolve_device",
    "validate_options",
]

ModuleT = TypeVar("ModuleT", bound=nn.Module)
FnT = TypeVar("FnT", bound=Callable[..., Any])

RESOLVED_DEVICE = re.compile(r"^(cpu|cuda(:[0-9]+)?)$")
CPU_PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "int8")
CUDA_PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "bf16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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
    # torch.compile backend; "inductor" generates kernels (a C compiler on the CPU). Tests use
    # backends that only trace.
    compile_backend: str = "inductor"

    @property
    def device_type(self) -> str:
        """ "cpu" or "cuda"."""
        return "cuda" if self.device.startswith("cuda") else "cpu"

    def version_suffix(self) -> str:
        """Appended to model_version so decisions record which arithmetic produced them.

        "+" and the parts that differ from CPU fp32, joined by "-", in this order: "cuda" on a
        CUDA device (the index is not recorded: same arithmetic on any GPU of the replica),
        the precision unless fp32, "tf32" when TF32 is on (CUDA only; the CPU ignores it),
        "compile" when the encoders are compiled. CPU fp32 adds nothing, so versions recorded
        before GPUs existed are unchanged. Examples: "" (CPU fp32), "+bf16", "+int8" (CPU),
        "+cuda" (CUDA fp32), "+cuda-fp16", "+cuda-bf16-tf32", "+cuda-fp16-compile".
        """
        parts = []
        on_cuda = self.device_type == "cuda"
        if on_cuda:
            parts.append("cuda")
        if self.precision != "fp32":
            parts.append(self.precision)
        if self.tf32 and on_cuda:
            parts.append("tf32")
        if self.compile:
            parts.append("compile")
        return "+" + "-".join(parts) if parts else ""


def validate_options(options: InferenceOptions) -> None:
    """Refuse, before any weights load, what cannot run here; a ModelLoadError says the fix.

    Precision and device are checked against each other first (no GPU needed for that): fp16 is
    CUDA-only, int8 CPU-only. Then a CUDA device must be one torch can see.
    """
    if not RESOLVED_DEVICE.match(options.device):
        raise ModelLoadError(
            f"device {options.device!r}: expected cpu, cuda or cuda:N; resolve 'auto' with "
            "moderator.model.inference.resolve_device before loading"
        )
    if options.precision not in PRECISIONS:
        raise ModelLoadError(f"precision {options.precision!r}: expected one of {PRECISIONS}")
    if options.device_type == "cpu" and options.precision not in CPU_PRECISIONS:
        raise ModelLoadError(
            f"precision {options.precision} needs a CUDA device (device is {options.device}): "
            "CPUs have no fast fp16 arithmetic; use fp32, bf16 or int8 on the CPU"
        )
    if options.device_type == "cuda" and options.precision not in CUDA_PRECISIONS:
        raise ModelLoadError(
            f"precision {options.precision} runs on the CPU only (device is {options.device}): "
            "dynamic int8 quantisation has no CUDA kernels; use fp16 or bf16 on a GPU, or "
            "device cpu for int8"
        )
    if options.device_type == "cuda":
        resolve_device(options.device)


def apply_cuda_flags(options: InferenceOptions) -> None:
    """TF32 on or off for CUDA matmuls and cuDNN convolutions, as options.tf32 says.

    These flags are process-wide, not per model: the last model loaded in a process decides for
    every model in it. Both are set either way because cuDNN allows TF32 by default.
    """
    if options.device_type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = options.tf32
    torch.backends.cudnn.allow_tf32 = options.tf32


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
    """Eval mode on options.device, and int8 Linear layers when asked for (CPU only);
    bf16 and fp16 are applied at call time (autocast)."""
    module.eval()
    if options.device_type != "cpu":
        module.to(options.device)
    if options.precision == "int8":
        return quantize_linear_int8(module)
    return module


@contextlib.contextmanager
def precision_context(options: InferenceOptions) -> Iterator[None]:
    """Inference mode, plus autocast on the options' device type for bf16 and fp16."""
    with torch.inference_mode():
        dtype = AUTOCAST_DTYPES.get(options.precision)
        if dtype is not None:
            with torch.autocast(options.device_type, dtype=dtype):
                yield
        else:
            yield


def pixels_to_device(pixels: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """uint8 NHWC numpy → uint8 NCHW view on device (no float conversion here).

    On CUDA the bytes go through pinned memory with a non-blocking copy, a quarter of the
    traffic of float32; scaling to float then runs on the GPU. On the CPU nothing is copied
    unless the array is read-only (np.frombuffer), which torch must not wrap.
    """
    if not pixels.flags.writeable:
        pixels = pixels.copy()
    host = torch.from_numpy(pixels)
    if torch.device(device).type == "cuda":
        host = host.pin_memory()
        return host.to(device, non_blocking=True).permute(0, 3, 1, 2)
    return host.permute(0, 3, 1, 2)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """float32 numpy on the host, from any device and dtype (bf16/fp16 under autocast)."""
    return tensor.float().cpu().numpy()


def compile_function(fn: FnT, options: InferenceOptions) -> FnT:
    """torch.compile fn for options; inputs get their batch dims marked dynamic by the callers
    (mark_dynamic), so new batch sizes reuse the graph instead of recompiling."""
    compiled = torch.compile(fn, backend=options.compile_backend)
    return compiled  # type: ignore[return-value]


def mark_dynamic(tensor: torch.Tensor, *dims: int) -> torch.Tensor:
    """Ask torch.compile for a graph general in dims (ignored for sizes 0 and 1, which it
    specialises: the warm-up compiles those separately)."""
    for dim in dims:
        torch._dynamo.maybe_mark_dynamic(tensor, dim)
    return tensor


# Warm-up shapes. Images: a full chunk of 16, a chunk of 2 and a lone image, as torch.compile
# keeps apart size 1 (specialised) and, for convolutions, batches under 16 from larger ones; every
# chunk size (1 to 16) then reuses one of the three graphs. Captions: a lone short one and a batch
# of varied lengths (batch and length are dynamic beyond 1).
WARM_UP_IMAGE_BATCHES = (16, 2, 1)
WARM_UP_CAPTIONS = (
    ["warm-up"],
    [" ".join(["word"] * n) for n in (1, 3, 6, 10, 15, 21, 28, 40)],
)


def warm_up(model: Any) -> None:
    """Run a ModerationModel on dummy batches at load: torch.compile traces and compiles, and
    CUDA initialises its kernels and workspaces, before any real batch arrives."""
    size = model.image_size
    for n in WARM_UP_IMAGE_BATCHES:
        model.embed_images(np.zeros((n, size, size, 3), dtype=np.uint8))
    for captions in WARM_UP_CAPTIONS:
        model.embed_texts(captions)
    flags = np.ones(2, dtype=bool)
    model.score(
        np.zeros((2, model.text_embedding_dim), dtype=np.float32),
        flags,
        np.zeros((2, model.image_embedding_dim), dtype=np.float32),
        flags,
    )


def needs_warm_up(options: InferenceOptions) -> bool:
    return options.compile or options.device_type == "cuda"


def resolve_device(requested: str, num_gpus: float = 0.0) -> str:
    """ "auto" → "cuda" when the replica was given a GPU (num_gpus > 0) and torch sees one,
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
