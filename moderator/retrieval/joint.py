"""The joint vector of a post, and the similarity of a post to a bank entry.

A post has up to two sides: the image embedding and the caption embedding (the text the model
reads: the normalised caption, joined to the image text for a model trained on both). Both come
from the classifier's own encoders and are already in the replica's batch (fresh or cached), so
comparing with a bank needs no second encoder pass.

Entry vectors (stored in the bank): each side L2-normalised and scaled by 1/sqrt(2),
concatenated [image | text]; a missing side is zeros. An entry with both sides is a unit vector,
the ImageBERT-style concatenate-and-renormalise joint embedding.

Similarity of a post to an entry: the mean, over the sides both have, of that side's cosine;
-inf (no match) when they share no side, and the replica reports 0.0 for a post with neither
side. With both sides on both, this is exactly the cosine of the two joint vectors. Rows that
lack a side are handled explicitly, not by zero-padding the cosine: an image-only repost of a
captioned entry scores its image cosine, not half of it; a caption-only post is compared on
text alone. Computed as sqrt(2) * (query halves · entry) / shared sides: one matmul.
"""

from __future__ import annotations

import numpy as np

_SQRT2 = np.float32(np.sqrt(2.0))
_EPS = np.float32(1e-12)


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: np.ndarray = vectors / np.maximum(norms, _EPS)
    return out


def _halves(
    image: np.ndarray, has_image: np.ndarray, text: np.ndarray, has_text: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[unit image | unit text] (a missing side zeros) and the two side flags."""
    has_image = np.asarray(has_image, dtype=bool)
    has_text = np.asarray(has_text, dtype=bool)
    if not (len(image) == len(text) == len(has_image) == len(has_text)):
        raise ValueError(
            f"rows differ: image {len(image)}, text {len(text)}, "
            f"has_image {len(has_image)}, has_text {len(has_text)}"
        )
    joint = np.concatenate(
        [_unit(image) * has_image[:, None], _unit(text) * has_text[:, None]], axis=1
    )
    return joint.astype(np.float32, copy=False), has_image, has_text


def entry_vectors(
    image: np.ndarray, has_image: np.ndarray, text: np.ndarray, has_text: np.ndarray
) -> np.ndarray:
    """float32 [N, Di + Dt] bank entry vectors (see the module docstring)."""
    joint, _, _ = _halves(image, has_image, text, has_text)
    out: np.ndarray = joint / _SQRT2
    return out


def query_vectors(
    image: np.ndarray, has_image: np.ndarray, text: np.ndarray, has_text: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 [B, Di + Dt] query halves (unit per present side) and the side flags [B]."""
    return _halves(image, has_image, text, has_text)


def entry_sides(entries: np.ndarray, image_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Which sides each stored entry has: bool [N] image, bool [N] text."""
    has_image = np.any(entries[:, :image_dim] != 0, axis=1)
    has_text = np.any(entries[:, image_dim:] != 0, axis=1)
    return has_image, has_text


def similarities(
    queries: np.ndarray,
    query_image: np.ndarray,
    query_text: np.ndarray,
    entries: np.ndarray,
    entry_image: np.ndarray,
    entry_text: np.ndarray,
) -> np.ndarray:
    """float32 [B, N]: the mean cosine over shared sides; -inf where no side is shared."""
    dots = queries @ entries.T
    shared = (
        np.asarray(query_image, np.float32)[:, None] * np.asarray(entry_image, np.float32)[None, :]
        + np.asarray(query_text, np.float32)[:, None] * np.asarray(entry_text, np.float32)[None, :]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(shared > 0, _SQRT2 * dots / shared, -np.inf)
    return out.astype(np.float32, copy=False)
