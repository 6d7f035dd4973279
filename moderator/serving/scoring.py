"""Scoring one batch request with a loaded model; shared by the deployment and benchmarks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from moderator.model import ModerationModel
from moderator.model.frame_attention import frame_attention_of
from moderator.model.object_tags import ImageTagger, object_tagger
from moderator.serving.messages import ModelInfo, ScoreRequest, ScoreResponse
from moderator.serving.recent import RecentEmbeddings
from moderator.signals.embeddings import model_embeddings

if TYPE_CHECKING:
    from moderator.retrieval.serving import SemanticBanks


def model_info(model: ModerationModel, banks: SemanticBanks | None = None) -> ModelInfo:
    return ModelInfo(
        model_version=model.model_version,
        categories=list(model.categories),
        image_size=model.image_size,
        image_embedding_dim=model.image_embedding_dim,
        text_embedding_dim=model.text_embedding_dim,
        reads_image_text=getattr(model, "reads_image_text", False),
        semantic_banks=banks.entries() if banks is not None else {},
        frame_attention=frame_attention_of(model) is not None,
        object_tags=object_tagger(model) is not None,
    )


def score_request(
    model: ModerationModel,
    request: ScoreRequest,
    recent: RecentEmbeddings | None = None,
    banks: SemanticBanks | None = None,
) -> ScoreResponse:
    """Encode the images and captions that need it, then score every row of the batch.

    With `recent`, images (by request.image_keys) and captions (by their text) that the
    replica encoded lately, or that repeat within the batch, are not encoded again. The
    encoders run as the embedding signals (moderator.signals.embeddings), which check their
    output's shape. With `banks`, every row's joint vector (from the same embeddings, fresh
    or cached) is compared with each semantic bank. A model trained with object tags reads each
    new text joined to the tags of the image of the rows that use it (the worker keys such texts
    by their image too, so every row of one text entry shows the same image).
    """
    embeddings = model_embeddings(model)
    image_dim, text_dim = embeddings.image.dim, embeddings.text.dim
    pixels, texts = request.pixels, request.texts
    started = time.perf_counter()
    if not len(pixels):
        new_images = np.zeros((0, image_dim), dtype=np.float32)
    elif recent is not None and len(request.image_keys) == len(pixels):
        new_images = recent.embed(
            "image",
            request.image_keys,
            lambda rows: embeddings.image.embed(pixels[rows]),
            image_dim,
        )
    else:
        new_images = embeddings.image.embed(pixels)
    images_done = time.perf_counter()
    image, has_image = _gather(
        new_images, request.cached_image_embeddings, request.image_index, image_dim
    )
    tagger = object_tagger(model)
    if tagger is not None and texts:
        texts = _tagged_texts(tagger, texts, request.caption_index, image, has_image)
    if not texts:
        new_texts = np.zeros((0, text_dim), dtype=np.float32)
    elif recent is not None:
        new_texts = recent.embed(
            "text", texts, lambda rows: embeddings.text.embed([texts[i] for i in rows]), text_dim
        )
    else:
        new_texts = embeddings.text.embed(texts)
    texts_done = time.perf_counter()

    text, has_text = _gather(
        new_texts, request.cached_text_embeddings, request.caption_index, text_dim
    )
    scores = model.score(text, has_text, image, has_image)
    frame_logits = _frame_logits(model, image, has_image)
    finished = time.perf_counter()
    semantic = banks.search(image, has_image, text, has_text) if banks else {}
    searched = time.perf_counter()
    return ScoreResponse(
        model_version=model.model_version,
        categories=list(model.categories),
        scores=scores,
        new_image_embeddings=new_images,
        new_text_embeddings=new_texts,
        image_encode_ms=(images_done - started) * 1000,
        text_encode_ms=(texts_done - images_done) * 1000,
        score_ms=(finished - texts_done) * 1000,
        semantic=semantic,
        semantic_ms=(searched - finished) * 1000,
        frame_logits=frame_logits,
    )


def _tagged_texts(
    tagger: ImageTagger,
    texts: list[str],
    caption_index: Sequence[int],
    image: np.ndarray,
    has_image: np.ndarray,
) -> list[str]:
    """Each text to encode joined to the tags of the first row's image that uses it."""
    first_row: dict[int, int] = {}
    for row, entry in enumerate(caption_index):
        if 0 <= entry < len(texts):
            first_row.setdefault(entry, row)
    rows = np.array([first_row.get(t, -1) for t in range(len(texts))], dtype=np.int64)
    shown = rows >= 0
    shown[shown] = has_image[rows[shown]]
    return tagger.tag_texts(texts, image[np.maximum(rows, 0)], shown)


def _frame_logits(
    model: ModerationModel, image: np.ndarray, has_image: np.ndarray
) -> np.ndarray | None:
    """Each row's frame attention logit (0.0 without an image), when the model has one."""
    attention = frame_attention_of(model)
    if attention is None:
        return None
    logits = np.zeros(len(has_image), dtype=np.float32)
    if has_image.any():
        logits[has_image] = attention.frame_logits(image[has_image])
    return logits


def _gather(
    fresh: np.ndarray, cached: np.ndarray, index: Sequence[int], dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row embeddings [B, dim] from a table (fresh entries, then cached), and row flags."""
    table = np.concatenate(
        [fresh.astype(np.float32, copy=False), cached.reshape(-1, dim).astype(np.float32)]
    )
    rows = np.asarray(index, dtype=np.int64)
    present = rows >= 0
    out = np.zeros((len(rows), dim), dtype=np.float32)
    out[present] = table[rows[present]]
    return out, present


def merge_requests(
    requests: list[ScoreRequest], image_dim: int, text_dim: int
) -> tuple[ScoreRequest, list[int]]:
    """Concatenate requests from several workers into one model batch.

    Returns the merged request and each request's row count, for `split_response`.
    Both tables' indices are rebased: all entries to encode first (in request order),
    then all cached embeddings.
    """
    if len(requests) == 1:
        return requests[0], [len(requests[0])]
    merged = ScoreRequest(
        image_index=_rebase(
            [r.image_index for r in requests],
            [len(r.pixels) for r in requests],
            [len(r.cached_image_embeddings) for r in requests],
        ),
        pixels=np.concatenate([r.pixels for r in requests]),
        cached_image_embeddings=np.concatenate(
            [r.cached_image_embeddings.reshape(-1, image_dim) for r in requests]
        ),
        caption_index=_rebase(
            [r.caption_index for r in requests],
            [len(r.texts) for r in requests],
            [len(r.cached_text_embeddings) for r in requests],
        ),
        texts=[text for r in requests for text in r.texts],
        cached_text_embeddings=np.concatenate(
            [r.cached_text_embeddings.reshape(-1, text_dim) for r in requests]
        ),
        # Keys only when every request has them: they must line up with the merged pixels.
        image_keys=[k for r in requests for k in r.image_keys]
        if all(len(r.image_keys) == len(r.pixels) for r in requests)
        else [],
    )
    return merged, [len(r) for r in requests]


def _rebase(indices: list[list[int]], fresh: list[int], cached: list[int]) -> list[int]:
    """Concatenate per-request table indices into one table: every request's entries to
    encode (in request order), then every request's cached entries; negatives stay as they are.
    """
    total_fresh = sum(fresh)
    out: list[int] = []
    fresh_offset = cached_offset = 0
    for index, n_fresh, n_cached in zip(indices, fresh, cached, strict=True):
        for i in index:
            if i < 0:
                out.append(i)
            elif i < n_fresh:
                out.append(fresh_offset + i)
            else:
                out.append(total_fresh + cached_offset + i - n_fresh)
        fresh_offset += n_fresh
        cached_offset += n_cached
    return out


def split_response(
    response: ScoreResponse, requests: list[ScoreRequest], rows: list[int]
) -> list[ScoreResponse]:
    if len(requests) == 1:
        return [response]
    out = []
    row = pixel = text = 0
    for request, count in zip(requests, rows, strict=True):
        pixels, texts = len(request.pixels), len(request.texts)
        out.append(
            ScoreResponse(
                model_version=response.model_version,
                categories=response.categories,
                scores=response.scores[row : row + count],
                new_image_embeddings=response.new_image_embeddings[pixel : pixel + pixels],
                new_text_embeddings=response.new_text_embeddings[text : text + texts],
                image_encode_ms=response.image_encode_ms,
                text_encode_ms=response.text_encode_ms,
                score_ms=response.score_ms,
                semantic={
                    name: matches.rows(row, row + count)
                    for name, matches in response.semantic.items()
                },
                semantic_ms=response.semantic_ms,
                frame_logits=None
                if response.frame_logits is None
                else response.frame_logits[row : row + count],
            )
        )
        row += count
        pixel += pixels
        text += texts
    return out
