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
