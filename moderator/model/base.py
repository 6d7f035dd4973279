"""The interface every moderation model implements, and the input checks they share."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ModerationModel(Protocol):
    """Embeds images and scores posts per category; what the serving layer calls.

    Image embeddings are split from scoring so callers can cache them by content hash.
    """

    model_version: str
    categories: list[str]
    image_size: int
    image_embedding_dim: int

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 RGB [N, image_size, image_size, 3] → float32 [N, image_embedding_dim]."""
        ...

    def score(
        self, captions: list[str], image_embeddings: np.ndarray, has_image: np.ndarray
    ) -> np.ndarray:
        """B captions, float32 [B, D] embeddings, bool [B] → float32 [B, categories] in [0, 1].

        Rows whose has_image is False are ignored; their image categories score 0.
        """
        ...


def check_pixels(pixels: np.ndarray, image_size: int) -> None:
    """Raise ValueError unless pixels is uint8 [N, image_size, image_size, 3]."""
    expected = (image_size, image_size, 3)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != expected:
        raise ValueError(
            f"pixels: expected uint8 [N, {image_size}, {image_size}, 3], "
            f"got {pixels.dtype} {pixels.shape}"
        )


def check_score_inputs(
    captions: list[str], image_embeddings: np.ndarray, has_image: np.ndarray, embedding_dim: int
) -> None:
    """Raise ValueError unless the three inputs describe the same B posts."""
    batch = len(captions)
    if image_embeddings.shape != (batch, embedding_dim):
        raise ValueError(
            f"image_embeddings: expected ({batch}, {embedding_dim}), got {image_embeddings.shape}"
        )
    if has_image.shape != (batch,) or has_image.dtype != np.bool_:
        raise ValueError(
            f"has_image: expected bool ({batch},), got {has_image.dtype} {has_image.shape}"
        )
