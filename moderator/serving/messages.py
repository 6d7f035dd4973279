"""What a worker sends to the Classifier deployment and gets back: numpy only, no torch.

One request carries a whole micro-batch. Each distinct image appears once in an
image table: first the ones to encode (pixels), then the ones whose features came
from the cache (embeddings). Captions have a table of their own built the same way
(normalised captions to encode, then cached embeddings). Rows point into both
tables, so a repost inside a batch is encoded once and a cached one not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NO_IMAGE = -1
NO_TEXT = -1


@dataclass(frozen=True, slots=True)
class ModelInfo:
    model_version: str
    categories: list[str]
    image_size: int
    image_embedding_dim: int
    text_embedding_dim: int
    reads_image_text: bool = False
    """The text side was trained on `model_text(caption, image_text)`: send it the image text."""
    semantic_banks: dict[str, int] = field(default_factory=dict)
    """Semantic banks the replica searches for every row: name → entries (docs/retrieval.md)."""
    frame_attention: bool = False
    """The model has a trained frame attention: responses carry `frame_logits` (docs/video.md)."""
    object_tags: bool = False
    """Trained on texts joined to their image's object tags: a text's embedding depends on the
    post's image too, so the worker keys it by both (moderator/model/object_tags.py)."""


@dataclass(slots=True)
class ScoreRequest:
    image_index: list[int]  # per row: NO_IMAGE or an index into the image table
    pixels: np.ndarray  # [M, S, S, 3] uint8: image table entries 0..M-1, to encode
    cached_image_embeddings: np.ndarray  # [K, Di] float32: image table entries M..M+K-1
    caption_index: list[int]  # per row: NO_TEXT or an index into the text table
    texts: list[str]  # T normalised captions: text table entries 0..T-1, to encode
    cached_text_embeddings: np.ndarray  # [L, Dt] float32: text table entries T..T+L-1
    # Content hash of each pixels row (the Redis cache key); lets the replica reuse an
    # embedding it computed lately. Empty: no reuse, every row is encoded.
    image_keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.image_index) != len(self.caption_index):
            raise ValueError(
                f"image_index has {len(self.image_index)} rows, "
                f"caption_index {len(self.caption_index)}"
            )

    def __len__(self) -> int:
        return len(self.caption_index)


@dataclass(slots=True)
class SemanticMatches:
    """One semantic bank's answer for each row of a batch (moderator.retrieval)."""

    similarity: np.ndarray  # [B] float32: best joint similarity; 0.0 with nothing to compare
    nearest: list[str]  # [B] id of that bank entry; '' with nothing to compare

    def rows(self, start: int, stop: int) -> SemanticMatches:
        return SemanticMatches(self.similarity[start:stop], self.nearest[start:stop])


@dataclass(slots=True)
class ScoreResponse:
    model_version: str
    categories: list[str]
    scores: np.ndarray  # [B, C] float32 in [0, 1]
    new_image_embeddings: np.ndarray  # [M, Di] float32, in pixels order
    new_text_embeddings: np.ndarray  # [T, Dt] float32, in texts order
    image_encode_ms: float
    text_encode_ms: float
    score_ms: float
    semantic: dict[str, SemanticMatches] = field(default_factory=dict)
    """Bank name → each row's best match; empty when the replica serves no semantic bank."""
    semantic_ms: float = 0.0
    frame_logits: np.ndarray | None = None
    """[B] float32 frame attention logit of each row (0.0 for a row without an image); None
    when the model has no frame attention (moderator/model/frame_attention.py)."""

    @property
    def encode_ms(self) -> float:
        return self.image_encode_ms + self.text_encode_ms
