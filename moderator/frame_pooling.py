"""Pooling one post's frame scores into the post's scores: max, mean or trained attention (#14).

Numpy only (no torch), so the worker imports it without loading the model stack. Attention
pooling is Σ_i softmax(logit)_i · score_i over the post's frames, with the logits of the
model's frame attention (moderator/model/frame_attention.py); training pools with the same
formula in torch (moderator/training/frames.py).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

FramePoolingMethod = Literal["max", "mean", "attention"]


def attention_weights(logits: np.ndarray) -> np.ndarray:
    """Softmax over one post's frames, computed stably in float64."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits)
    weights = np.exp(shifted)
    normalised: np.ndarray = weights / weights.sum()
    return normalised


def pool_scores(
    scores: np.ndarray, method: FramePoolingMethod | str, logits: np.ndarray | None = None
) -> np.ndarray:
    """One post's frame scores [F, C] → its scores [C]: max or mean per category, or the
    attention-weighted sum (`logits` [F], required for attention)."""
    if method == "attention":
        if logits is None:
            raise ValueError("attention pooling needs the frames' attention logits")
        weights = attention_weights(logits)
        pooled: np.ndarray = (weights[:, None] * scores.astype(np.float64)).sum(axis=0)
        return pooled.astype(scores.dtype)
    if method == "mean":
        mean: np.ndarray = scores.mean(axis=0)
        return mean
    if method == "max":
        top: np.ndarray = scores.max(axis=0)
        return top
    raise ValueError(f"frame pooling must be max, mean or attention, got {method!r}")
