"""The interface every moderation model implements, and the input checks they share."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from moderator.model.object_tags import object_tagger


@runtime_checkable
class ModerationModel(Protocol):
    """Embeds images and captions, and scores posts per category; what the serving layer calls.

    Both encoders are split from scoring so callers can cache embeddings by content hash.
    """

    model_version: str
    categories: list[str]
    image_size: int
    image_embedding_dim: int
    text_embedding_dim: int
    reads_image_text: bool
    """Trained on caption and image text joined (moderator.text.model_text): score it so."""

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 RGB [N, image_size, image_size, 3] → float32 [N, image_embedding_dim]."""
        ...

    def embed_texts(self, captions: list[str]) -> np.ndarray:
        """N non-blank captions → float32 [N, text_embedding_dim]."""
        ...

    def score(
        self,
        text_embeddings: np.ndarray,
        has_text: np.ndarray,
        image_embeddings: np.ndarray,
        has_image: np.ndarray,
    ) -> np.ndarray:
        """float32 [B, Dt], bool [B], float32 [B, Di], bool [B] → float32 [B, categories] in [0, 1].

        Rows whose has_text (has_image) is False have no caption (image): their embedding
        there is ignored, and the categories only that modality feeds score 0.
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
    model: ModerationModel,
    text_embeddings: np.ndarray,
    has_text: np.ndarray,
    image_embeddings: np.ndarray,
    has_image: np.ndarray,
) -> None:
    """Raise ValueError unless the four inputs describe the same B posts at the model's dims."""
    batch = len(has_text)
    for name, array, dim in (
        ("text_embeddings", text_embeddings, model.text_embedding_dim),
        ("image_embeddings", image_embeddings, model.image_embedding_dim),
    ):
        if array.shape != (batch, dim):
            raise ValueError(f"{name}: expected ({batch}, {dim}), got {array.shape}")
    for name, flags in (("has_text", has_text), ("has_image", has_image)):
        if flags.shape != (batch,) or flags.dtype != np.bool_:
            raise ValueError(f"{name}: expected bool ({batch},), got {flags.dtype} {flags.shape}")


def score_captions(
    model: ModerationModel,
    captions: list[str],
    image_embeddings: np.ndarray,
    has_image: np.ndarray,
) -> np.ndarray:
    """Embed raw captions (blank ones count as none) and score: for evaluation and tests.

    Serving goes through moderator.serving.scoring instead, which caches embeddings. A model
    trained with object tags reads each caption joined to its image's tags, as it does there.
    """
    rows = [i for i, caption in enumerate(captions) if caption.strip()]
    tagger = object_tagger(model)
    if tagger is not None:
        captions = tagger.tag_texts(captions, image_embeddings, has_image)
    text = np.zeros((len(captions), model.text_embedding_dim), dtype=np.float32)
    if rows:
        text[rows] = model.embed_texts([captions[i] for i in rows])
    has_text = np.zeros(len(captions), dtype=bool)
    has_text[rows] = True
    return model.score(text, has_text, image_embeddings, has_image)
