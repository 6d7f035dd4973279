"""What a worker sends to the Classifier deployment and gets back: numpy only, no torch.

One request carries a whole micro-batch. Each distinct image appears once in an
image table: first the ones to encode (pixels), then the ones whose features came
from the cache (embeddings). Rows point into that table, so a repost inside a
batch is encoded once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_IMAGE = -1


@dataclass(frozen=True, slots=True)
class ModelInfo:
    model_version: str
    categories: list[str]
    image_size: int
    image_embedding_dim: int


@dataclass(slots=True)
class ScoreRequest:
    captions: list[str]
    image_index: list[int]  # per row: NO_IMAGE or an index into the image table
    pixels: np.ndarray  # [M, S, S, 3] uint8: table entries 0..M-1, to encode
    cached_embeddings: np.ndarray  # [K, D] float32: table entries M..M+K-1

    def __len__(self) -> int:
        return len(self.captions)


@dataclass(slots=True)
class ScoreResponse:
    model_version: str
    categories: list[str]
    scores: np.ndarray  # [B, C] float32 in [0, 1]
    new_embeddings: np.ndarray  # [M, D] float32, in pixels order
    encode_ms: float
    score_ms: float
