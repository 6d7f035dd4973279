"""The feature cache on both sides of the model: look embeddings up before, write them back after.

Decoded posts become one ScoreRequest per micro-batch, deduplicated within the batch: an
image or caption the cache already holds travels as its embedding, the rest are encoded by
the replica, which returns the new embeddings in the order of BuiltRequest's hashes for
them to be stored. Both halves live here because they must agree on the keys.

What each encoder reads of a post and its key come from the embedding signals
(moderator.signals.embeddings), which the replica encodes with: images are keyed by the sha256
of their bytes, texts by the sha256 of the text the model reads (the normalised caption,
joined to the image text for a model trained on both), so a cached embedding is exactly what
the encoder would compute for that key. One cache read covers both kinds, and so does one
write.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from moderator.cache import FeatureCache, FeatureKind
from moderator.errors import ConfigError
from moderator.frame_pooling import pool_scores
from moderator.ingest import DecodedPost
from moderator.media_settings import MediaLimits
from moderator.serving.messages import (
    NO_IMAGE,
    NO_TEXT,
    ModelInfo,
    ScoreRequest,
    ScoreResponse,
)
from moderator.signals import SignalSubject
from moderator.signals.embeddings import EmbeddingSignals, embedding_signals

K = TypeVar("K", bound=Hashable)
logger = logging.getLogger(__name__)


@dataclass(slots=True)
class BuiltRequest:
    request: ScoreRequest
    image_hashes: list[str]  # sha256 of each image in request.pixels, in order
    text_hashes: list[str]  # text_digest of each text in request.texts, in order
    cache_hits: list[list[str]]  # per row: the kinds whose embedding came from the cache


class FeatureLookup:
    """The worker's view of the feature cache (None: no cache, every feature is encoded)."""

    def __init__(self, cache: FeatureCache | None, info: ModelInfo) -> None:
        self.cache = cache
        self.info = info
        self.embeddings = embedding_signals(
            info.model_version,
            info.image_embedding_dim,
            info.text_embedding_dim,
            info.reads_image_text,
            object_tags=info.object_tags,
        )

    def build(self, posts: Sequence[DecodedPost]) -> BuiltRequest:
        """One request for `posts`, with the cached embeddings filled in."""
        return build_request(posts, self.cache, self.embeddings, self.info.image_size)

    def write_back(self, built: BuiltRequest, response: ScoreResponse) -> None:
        """Store the embeddings the replica computed for `built`, keyed by content hash."""
        if self.cache is None:
            return
        self.cache.put_many(
            {
                "image": dict(zip(built.image_hashes, response.new_image_embeddings, strict=True)),
                "text": dict(zip(built.text_hashes, response.new_text_embeddings, strict=True)),
            }
        )


@dataclass(slots=True)
class _Table:
    """One feature table: distinct keys to encode first, then the cached ones."""

    to_encode: list[str]
    cached: list[str]
    index: dict[str, int]

    @classmethod
    def build(cls, digests: list[str], hits: dict[str, np.ndarray]) -> _Table:
        to_encode = [d for d in digests if d not in hits]
        cached = [d for d in digests if d in hits]
        return cls(to_encode, cached, {d: i for i, d in enumerate(to_encode + cached)})


def build_request(
    posts: Sequence[DecodedPost],
    cache: FeatureCache | None,
    embeddings: EmbeddingSignals,
    image_size: int,
) -> BuiltRequest:
    subjects = [p.subject() for p in posts]
    image_keys = [embeddings.image.digest(s) for s in subjects]
    captions = [embeddings.text.model_input(s) or "" for s in subjects]
    text_keys = [embeddings.text.digest(s) for s in subjects]
    # A post's further frames are rows after every post's own row (frame_rows), so rows
    # 0..N-1 stay the posts; each frame is keyed by its digest like any image.
    extra = frame_rows(posts)
    frame_pixels = [posts[p].frames[f].pixels for p, f in extra]
    frame_keys = [
        embeddings.image.digest(SignalSubject(image_sha256=posts[p].frames[f].digest, pixels=px))
        for (p, f), px in zip(extra, frame_pixels, strict=True)
    ]
    image_keys += frame_keys
    captions += [captions[p] for p, _ in extra]
    text_keys += [text_keys[p] for p, _ in extra]
    all_pixels = [p.pixels for p in posts] + frame_pixels
    image_dim, text_dim = embeddings.image.dim, embeddings.text.dim
    wanted: dict[FeatureKind, list[str]] = {
        "image": _distinct(image_keys),
        "text": _distinct(text_keys),
    }
    hits = cache.get_many(wanted) if cache is not None else {}
    image_hits, text_hits = hits.get("image", {}), hits.get("text", {})
    images = _Table.build(wanted["image"], image_hits)
    texts = _Table.build(wanted["text"], text_hits)

    first_pixels: dict[str, np.ndarray] = {}
    first_caption: dict[str, str] = {}
    image_index: list[int] = []
    caption_index: list[int] = []
    cache_hits: list[list[str]] = []
    for pixels, image_key, caption, text_key in zip(
        all_pixels, image_keys, captions, text_keys, strict=True
    ):
        row_hits = []
        if image_key is None or pixels is None:
            image_index.append(NO_IMAGE)
        else:
            first_pixels.setdefault(image_key, pixels)
            image_index.append(images.index[image_key])
            if image_key in image_hits:
                row_hits.append("image")
        if text_key is None:
            caption_index.append(NO_TEXT)
        else:
            first_caption.setdefault(text_key, caption)
            caption_index.append(texts.index[text_key])
            if text_key in text_hits:
                row_hits.append("text")
        if len(cache_hits) < len(posts):  # per post: the hits of its own row
            cache_hits.append(row_hits)

    request = ScoreRequest(
        image_index=image_index,
        pixels=_stack(
            [first_pixels[k] for k in images.to_encode], (image_size, image_size, 3), np.uint8
        ),
        cached_image_embeddings=_stack([image_hits[k] for k in images.cached], (image_dim,)),
        caption_index=caption_index,
        texts=[first_caption[k] for k in texts.to_encode],
        cached_text_embeddings=_stack([text_hits[k] for k in texts.cached], (text_dim,)),
        image_keys=list(images.to_encode),
    )
    return BuiltRequest(
        request=request,
        image_hashes=images.to_encode,
        text_hashes=texts.to_encode,
        cache_hits=cache_hits,
    )


def _distinct(keys: Sequence[K | None]) -> list[K]:
    return list(dict.fromkeys(k for k in keys if k is not None))


def _stack(
    arrays: list[np.ndarray], shape: tuple[int, ...], dtype: type = np.float32
) -> np.ndarray:
    return np.stack(arrays) if arrays else np.zeros((0, *shape), dtype=dtype)


def frame_rows(posts: Sequence[DecodedPost]) -> list[tuple[int, int]]:
    """(post index, frame index) of each row after the posts' own: frames 1.. of every post
    with several, in post order (frame 0 is the post's own row)."""
    return [(p, f) for p, post in enumerate(posts) for f in range(1, len(post.frames))]


@dataclass(frozen=True, slots=True)
class WorstFrame:
    index: int
    """Position in the post's sampled frames (DecodedPost.frames)."""
    scores: np.ndarray
    """That frame's scores, [C]."""


def pool_frames(
    posts: Sequence[DecodedPost], scores: np.ndarray, frame_logits: np.ndarray | None = None
) -> tuple[np.ndarray, list[WorstFrame | None]]:
    """Rows of `scores` (a request built by build_request) → one row per post: a post with
    several frames gets their `frame_pooling` (max or mean per category, or attention: the
    softmax of the rows' `frame_logits` over the post's frames weighs their scores) and its
    worst frame (the highest single score over every category); others keep their row and None.

    Attention without logits (the replica's model has no frame attention: the worker refuses
    that at start, check_frame_pooling, but replicas may be redeployed under it) pools by max,
    the most cautious choice, and logs it."""
    count = len(posts)
    if scores.shape[0] == count:
        return scores, [None] * count  # no post had frames: the common case
    pooled = scores[:count].copy()
    worst: list[WorstFrame | None] = [None] * count
    extra = iter(range(count, scores.shape[0]))
    for index, post in enumerate(posts):
        if len(post.frames) < 2:
            continue
        row_numbers = [index, *(next(extra) for _ in range(len(post.frames) - 1))]
        rows = scores[row_numbers]
        method = post.frame_pooling
        if method == "attention" and frame_logits is None:
            logger.warning("frame pooling is attention but the model sent no frame logits: max")
            method = "max"
        logits = frame_logits[row_numbers] if frame_logits is not None else None
        pooled[index] = pool_scores(rows, method, logits)
        frame = int(np.unravel_index(int(np.argmax(rows)), rows.shape)[0])
        worst[index] = WorstFrame(frame, rows[frame])
    return pooled, worst


def check_frame_pooling(media: MediaLimits, info: ModelInfo) -> None:
    """Refuse to start when the settings pool frames by attention and the served model has no
    frame attention: every multi-frame post would be pooled by something else."""
    if media.pooling == "attention" and not info.frame_attention:
        raise ConfigError(
            "limits.media.pooling is 'attention' but the served model "
            f"{info.model_version} has no frame attention (train one with "
            "`moderator train --frame-pooling attention`, or set limits.media.pooling to max "
            "or mean)"
        )
