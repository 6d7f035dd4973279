"""Scoring one batch request with a loaded model; shared by the deployment and benchmarks."""

from __future__ import annotations

import time

import numpy as np

from moderator.model import ModerationModel
from moderator.serving.messages import ModelInfo, ScoreRequest, ScoreResponse


def model_info(model: ModerationModel) -> ModelInfo:
    return ModelInfo(
        model_version=model.model_version,
        categories=list(model.categories),
        image_size=model.image_size,
        image_embedding_dim=model.image_embedding_dim,
    )


def score_request(model: ModerationModel, request: ScoreRequest) -> ScoreResponse:
    """Encode the images that need it, then score every row of the batch."""
    dim = model.image_embedding_dim
    started = time.perf_counter()
    if len(request.pixels):
        new_embeddings = model.embed_images(request.pixels)
    else:
        new_embeddings = np.zeros((0, dim), dtype=np.float32)
    encoded = time.perf_counter()

    table = np.concatenate(
        [new_embeddings, request.cached_embeddings.reshape(-1, dim).astype(np.float32)]
    )
    index = np.asarray(request.image_index, dtype=np.int64)
    has_image = index >= 0
    embeddings = np.zeros((len(request), dim), dtype=np.float32)
    embeddings[has_image] = table[index[has_image]]
    scores = model.score(request.captions, embeddings, has_image)
    finished = time.perf_counter()
    return ScoreResponse(
        model_version=model.model_version,
        categories=list(model.categories),
        scores=scores,
        new_embeddings=new_embeddings,
        encode_ms=(encoded - started) * 1000,
        score_ms=(finished - encoded) * 1000,
    )


def merge_requests(requests: list[ScoreRequest], dim: int) -> tuple[ScoreRequest, list[int]]:
    """Concatenate requests from several workers into one model batch.

    Returns the merged request and each request's row count, for `split_response`.
    Image-table indices are rebased: all pixels first (in request order), then all
    cached embeddings.
    """
    if len(requests) == 1:
        return requests[0], [len(requests[0])]
    total_pixels = sum(len(r.pixels) for r in requests)
    captions: list[str] = []
    image_index: list[int] = []
    pixel_offset = cached_offset = 0
    for request in requests:
        pixels = len(request.pixels)
        captions.extend(request.captions)
        for i in request.image_index:
            if i < 0:
                image_index.append(i)
            elif i < pixels:
                image_index.append(pixel_offset + i)
            else:
                image_index.append(total_pixels + cached_offset + i - pixels)
        pixel_offset += pixels
        cached_offset += len(request.cached_embeddings)
    merged = ScoreRequest(
        captions=captions,
        image_index=image_index,
        pixels=np.concatenate([r.pixels for r in requests]),
        cached_embeddings=np.concatenate([r.cached_embeddings.reshape(-1, dim) for r in requests]),
    )
    return merged, [len(r) for r in requests]


def split_response(
    response: ScoreResponse, requests: list[ScoreRequest], rows: list[int]
) -> list[ScoreResponse]:
    if len(requests) == 1:
        return [response]
    out = []
    row = pixel = 0
    for request, count in zip(requests, rows, strict=True):
        pixels = len(request.pixels)
        out.append(
            ScoreResponse(
                model_version=response.model_version,
                categories=response.categories,
                scores=response.scores[row : row + count],
                new_embeddings=response.new_embeddings[pixel : pixel + pixels],
                encode_ms=response.encode_ms,
                score_ms=response.score_ms,
            )
        )
        row += count
        pixel += pixels
    return out
