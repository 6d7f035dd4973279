"""The baseline: the same model on the same batches, in a plain loop, no Kafka, no Ray."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

import numpy as np
import torch

from moderator.config import DecodeLimits
from moderator.demo.samples import SampleRecord
from moderator.ingest import decode_post, normalise_caption
from moderator.serving.classifier_deployment import load_replica_model
from moderator.serving.messages import NO_IMAGE, NO_TEXT, ScoreRequest
from moderator.serving.scoring import score_request
from moderator.serving_settings import ClassifierArgs


@dataclass(frozen=True)
class RawLoopResult:
    posts_per_s: float
    image_encode_ms_per_image: float  # image encoder cost per image
    text_encode_ms_per_caption: float  # text encoder cost per caption
    rest_ms_per_post: float  # everything else per post (scoring heads, request handling)


def build_batches(
    samples: list[SampleRecord], batch_size: int, image_size: int, image_dim: int, text_dim: int
) -> list[ScoreRequest]:
    """Every post's pixels and caption sent for encoding: no cache and no in-batch dedupe."""
    limits = DecodeLimits()
    decoded = [decode_post(s.value, limits, image_size) for s in samples if s.valid]
    batches = []
    for start in range(0, len(decoded), batch_size):
        chunk = decoded[start : start + batch_size]
        with_pixels = [d.pixels for d in chunk if d.pixels is not None]
        captions = [normalise_caption(d.post.caption) for d in chunk]
        image_index, caption_index, next_image, next_text = [], [], 0, 0
        for d, caption in zip(chunk, captions, strict=True):
            image_index.append(next_image if d.pixels is not None else NO_IMAGE)
            next_image += d.pixels is not None
            caption_index.append(next_text if caption else NO_TEXT)
            next_text += bool(caption)
        batches.append(
            ScoreRequest(
                image_index=image_index,
                pixels=np.stack(with_pixels)
                if with_pixels
                else np.zeros((0, image_size, image_size, 3), np.uint8),
                cached_image_embeddings=np.zeros((0, image_dim), np.float32),
                caption_index=caption_index,
                texts=[c for c in captions if c],
                cached_text_embeddings=np.zeros((0, text_dim), np.float32),
            )
        )
    return batches


def run_raw_loop(
    samples: list[SampleRecord], batch_size: int, args: ClassifierArgs
) -> RawLoopResult:
    """The replicas' model (checkpoint, device, precision) and torch threads, in one loop."""
    torch.set_num_threads(args.torch_threads)
    model = load_replica_model(args)
    batches = build_batches(
        samples, batch_size, model.image_size, model.image_embedding_dim, model.text_embedding_dim
    )
    score_request(model, batches[0])  # warm-up
    image_ms = text_ms = 0.0
    started = time.perf_counter()
    for batch in batches:
        response = score_request(model, batch)
        image_ms += response.image_encode_ms
        text_ms += response.text_encode_ms
    elapsed = time.perf_counter() - started
    posts = sum(len(b) for b in batches)
    images = sum(len(b.pixels) for b in batches)
    captions = sum(len(b.texts) for b in batches)
    return RawLoopResult(
        posts_per_s=posts / elapsed,
        image_encode_ms_per_image=image_ms / max(images, 1),
        text_encode_ms_per_caption=text_ms / max(captions, 1),
        rest_ms_per_post=(elapsed * 1000 - image_ms - text_ms) / posts,
    )


def mean_result(first: RawLoopResult, last: RawLoopResult) -> RawLoopResult:
    """The mean of two raw-loop runs (before and after the pipeline runs)."""
    return RawLoopResult(
        **{f.name: (getattr(first, f.name) + getattr(last, f.name)) / 2 for f in fields(first)}
    )
