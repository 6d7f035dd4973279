"""Image-text matching (ITM), after ImageBERT / UNITER: a second head that tells whether a
caption belongs to its image, served as one more score a policy can read.

The ITM head is a fusion head of the same type and options as the classifier's, with one
output, trained on the cached embeddings of the rows that have an image: each (caption, its
own image) pair is a match (label 0), and the same caption with the image of another row, by a
seeded derangement, is a mismatch (label 1): in-batch negatives drawn once per split. Training
is the classifier's own stage-1 loop (`train_head`: early stopping on validation AUROC of
match vs mismatch). The served score `image_text_mismatch` is its sigmoid, 0 for a post
without a caption or without an image (moderator/model/fusion_model.py).
"""

from __future__ import annotations

import numpy as np
from rich.progress import Progress

from moderator.model.fusion_config import ITM_CATEGORY
from moderator.model.fusion_heads import FusionHead
from moderator.training.embedding_cache import Embeddings
from moderator.training.errors import TrainingDataError
from moderator.training.metrics import auroc
from moderator.training.trainer import (
    DEFAULT_MOMENTUM,
    History,
    TrainConfig,
    predict,
    train_head,
)


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of range(n) with no fixed point (n >= 2)."""
    order = rng.permutation(n)
    # Shifting a random order by one position maps each index to a different one.
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, -1)
    return out


def matching_pairs(embeddings: Embeddings, seed: int) -> tuple[Embeddings, np.ndarray]:
    """Matches then mismatches of the rows with an image, and labels [2n, 1] (1 = mismatch)."""
    rows = np.flatnonzero(embeddings.has_image)
    if len(rows) < 2:
        raise TrainingDataError("image-text matching needs at least two rows with an image")
    other = rows[derangement(len(rows), np.random.default_rng(seed))]
    text = np.concatenate([embeddings.text[rows], embeddings.text[rows]])
    image = np.concatenate([embeddings.image[rows], embeddings.image[other]])
    has_image = np.ones(2 * len(rows), dtype=bool)
    labels = np.repeat(np.array([0.0, 1.0], dtype=np.float32), len(rows))[:, None]
    return Embeddings(text, image, has_image), labels


def train_itm(
    train: Embeddings, val: Embeddings, config: TrainConfig, progress: Progress | None = None
) -> tuple[FusionHead, History, float]:
    """The ITM head, its history and its validation AUROC at telling mismatches from matches."""
    train_pairs, train_labels = matching_pairs(train, config.seed)
    val_pairs, val_labels = matching_pairs(val, config.seed + 1)
    # The classifier's extra losses (RGCL, ITC, momentum distillation) are its own, not ITM's.
    plain = config.model_copy(
        update={
            "rgcl_weight": 0.0,
            "itc_weight": 0.0,
            "distill_alpha": 0.0,
            "momentum": DEFAULT_MOMENTUM,
            "modalities": "both",
        }
    )
    head, history = train_head(train_pairs, train_labels, val_pairs, val_labels, plain, progress)
    scores = predict(head, val_pairs, "both")
    return head, history, auroc(val_labels[:, 0], scores[:, 0]) or 0.5


def mismatch_scores(head: FusionHead, embeddings: Embeddings) -> np.ndarray:
    """Sigmoid mismatch score per row [N]; 0 where the row has no image."""
    scores = predict(head, embeddings, "both")[:, 0]
    return np.where(embeddings.has_image, scores, 0.0)


__all__ = ["ITM_CATEGORY", "derangement", "matching_pairs", "mismatch_scores", "train_itm"]
