"""The baseline: the same model on the same batches, in a plain loop, no Kafka, no Ray."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from moderator.config import DecodeLimits
from moderator.demo.samples import SampleRecord
from moderator.ingest import decode_post
from moderator.model import load_model
from moderator.serving.messages import NO_IMAGE, ScoreRequest
from moderator.serving.scoring import score_request


@dataclass(frozen=True)
class RawLoopResult:
    posts_per_s: float
    image_encode_ms_per_image: float  # encoder cost per image
    rest_ms_per_post: float  # everything else per post (captions, heads)


def build_batches(
    samples: list[SampleRecord], batch_size: int, image_size: int
) -> list[ScoreRequest]:
    """Every post's pixels sent for encoding: no cache and no in-batch dedupe."""
    limits = DecodeLimits()
    decoded = [decode_post(s.value, limits, image_size) for s in samples if s.valid]
    batches = []
    for start in range(0, len(decoded), batch_size):
        chunk = decoded[start : start + batch_size]
        with_pixels = [d.pixels for d in chunk if d.pixels is not None]
        index, next_image = [], 0
        for d in chunk:
            index.append(next_image if d.pixels is not None else NO_IMAGE)
            next_image += d.pixels is not None
        batches.append(
            ScoreRequest(
                captions=[d.post.caption for d in chunk],
                image_index=index,
                pixels=np.stack(with_pixels)
                if with_pixels
                else np.zeros((0, image_size, image_size, 3), np.uint8),
                cached_embeddings=np.zeros((0, 1), np.float32),
            )
        )
    return batches


def run_raw_loop(
    samples: list[SampleRecord], batch_size: int, torch_threads: int, checkpoint: str | None
) -> RawLoopResult:
    torch.set_num_threads(torch_threads)
    model = load_model(checkpoint)
    batches = build_batches(samples, batch_size, model.image_size)
    for batch in batches:
        batch.cached_embeddings = np.zeros((0, model.image_embedding_dim), np.float32)
    score_request(model, batches[0])  # warm-up
    encode_ms = score_ms = 0.0
    started = time.perf_counter()
    for batch in batches:
        response = score_request(model, batch)
        encode_ms += response.encode_ms
        score_ms += response.score_ms
    elapsed = time.perf_counter() - started
    posts = sum(len(b) for b in batches)
    images = sum(len(b.pixels) for b in batches)
    return RawLoopResult(
        posts_per_s=posts / elapsed,
        image_encode_ms_per_image=encode_ms / max(images, 1),
        rest_ms_per_post=(elapsed * 1000 - encode_ms) / posts,
    )
