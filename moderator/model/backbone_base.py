"""The backbone interface: a pair of encoders that turn images and captions into vectors.

Every backbone (the offline MiniLM + EfficientNet-Lite0 pair, Hugging Face CLIP and ALIGN)
implements `BackboneEncoder`; fusion heads only ever see its output vectors. One contract test
(tests/unit/test_model_backbones.py) runs against every implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from moderator.model.inference import (
    InferenceOptions,
    compile_function,
    mark_dynamic,
    pixels_to_device,
    to_numpy,
)

BackboneType = Literal["offline", "clip", "align"]
IMAGE_CHUNK = 16
TEXT_CHUNK = 64


class ImagePreprocessing(BaseModel):
    """uint8 pixels → model input: x = pixel * rescale_factor (- 1 if rescale_offset),
    then (x - mean) / std when normalize. Recorded in every checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(gt=0, description="square side the worker resizes images to")
    rescale_factor: float = Field(default=1 / 255, gt=0)
    rescale_offset: bool = Field(default=False, description="subtract 1 after rescaling")
    normalize: bool = True
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    max_text_length: int = Field(default=128, gt=0, description="captions are cut at this")

    def check(self, pixels: np.ndarray) -> None:
        """Raise ValueError unless pixels is uint8 [N, image_size, image_size, 3]."""
        expected = (self.image_size, self.image_size, 3)
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != expected:
            raise ValueError(
                f"pixels: expected uint8 [N, {self.image_size}, {self.image_size}, 3], "
                f"got {pixels.dtype} {pixels.shape}"
            )

    def to_tensor(self, pixels: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
        """uint8 RGB [N, S, S, 3] → float32 NCHW model input on device.

        The bytes travel as uint8 (pinned, non-blocking on CUDA) and are scaled on the device;
        on the CPU the arithmetic is what it always was, bit for bit.
        """
        self.check(pixels)
        x = pixels_to_device(pixels, device).float() * self.rescale_factor
        if self.rescale_offset:
            x = x - 1.0
        if self.normalize:
            mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
            x = (x - mean) / std
        return x.contiguous()


class BackboneSpec(BaseModel):
    """Which backbone a checkpoint was trained on; `id` is a hub id or a local directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: BackboneType
    id: str = Field(min_length=1, description="hub id, local path, or 'default' for offline")
    revision: str | None = Field(default=None, description="hub revision (commit) pinned")


@runtime_checkable
class BackboneEncoder(Protocol):
    """Image and text encoders behind one interface.

    The `*_features` methods are differentiable (stage-2 fine-tuning); `encode_*` run them in
    inference mode in chunks and return float32 numpy arrays.
    """

    spec: BackboneSpec
    preprocessing: ImagePreprocessing
    image_dim: int
    text_dim: int
    device: torch.device  # where the modules are, and where encode_* send their inputs

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed NCHW images → [N, image_dim]."""
        ...

    def text_features(self, texts: list[str]) -> torch.Tensor:
        """Captions → [N, text_dim]; tokenises internally."""
        ...

    def to(self, device: torch.device) -> None:
        """Move every trainable module (and the inputs of later calls) to device."""
        ...

    def compile_encoders(self, options: InferenceOptions) -> None:
        """Route encode_images / encode_texts through torch.compile'd forwards."""
        ...

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [N, S, S, 3] → float32 [N, image_dim], no gradients."""
        ...

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Captions → float32 [N, text_dim], no gradients."""
        ...

    def trainable_modules(self) -> dict[str, nn.Module]:
        """The torch modules whose weights stage 2 fine-tunes, by a stable name."""
        ...


class TorchBackbone:
    """Chunked inference on top of the differentiable `*_features` methods of a subclass."""

    spec: BackboneSpec
    preprocessing: ImagePreprocessing
    image_dim: int
    text_dim: int
    device: torch.device = torch.device("cpu")

    # torch.compile'd forwards for encode_* (compile_encoders); training never uses them.
    compiled_image: Callable[[torch.Tensor], torch.Tensor] | None = None
    compiled_text: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def tokenise(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Captions → token tensors on self.device, as text_forward takes them."""
        raise NotImplementedError

    def text_forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token tensors → [N, text_dim]: the tensor-only part of text_features (compilable)."""
        raise NotImplementedError

    def text_features(self, texts: list[str]) -> torch.Tensor:
        return self.text_forward(self.tokenise(texts))

    def trainable_modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        self.preprocessing.check(pixels)
        if len(pixels) == 0:
            return np.zeros((0, self.image_dim), dtype=np.float32)
        forward = self.compiled_image or self.image_features
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(pixels), IMAGE_CHUNK):
                chunk = self.preprocessing.to_tensor(
                    pixels[start : start + IMAGE_CHUNK], self.device
                )
                if self.compiled_image is not None:
                    mark_dynamic(chunk, 0)
                chunks.append(to_numpy(forward(chunk)))
        return np.concatenate(chunks)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.text_dim), dtype=np.float32)
        forward = self.compiled_text or self.text_forward
        # Sorting by length keeps padding (and so compute) low inside each chunk.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.text_dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), TEXT_CHUNK):
                rows = order[start : start + TEXT_CHUNK]
                batch = self.tokenise([texts[i] for i in rows])
                if self.compiled_text is not None:
                    for tensor in batch.values():
                        mark_dynamic(tensor, 0, 1)
                out[rows] = to_numpy(forward(batch))
        return out

    def compile_encoders(self, options: InferenceOptions) -> None:
        self.compiled_image = compile_function(self.image_features, options)
        self.compiled_text = compile_function(self.text_forward, options)

    def to(self, device: torch.device) -> None:
        """Move every trainable module (and the inputs of later calls) to device."""
        self.device = torch.device(device)
        for module in self.trainable_modules().values():
            module.to(device)
