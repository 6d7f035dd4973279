"""Decoded posts → one ScoreRequest, using the feature cache and deduplicating images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from moderator.cache import FeatureCache
from moderator.ingest import DecodedPost
from moderator.serving.messages import NO_IMAGE, ScoreRequest


@dataclass(slots=True)
class BuiltRequest:
    request: ScoreRequest
    encode_hashes: list[str]  # sha256 of each image in request.pixels, in order
    cache_hit_rows: set[int]


def build_request(
    posts: Sequence[DecodedPost], cache: FeatureCache | None, image_size: int, dim: int
) -> BuiltRequest:
    hashes = list(dict.fromkeys(p.image_sha256 for p in posts if p.image_sha256 is not None))
    cached = cache.get_many(hashes) if cache is not None else {}
    to_encode = [h for h in hashes if h not in cached]
    cached_order = [h for h in hashes if h in cached]
    table_index = {h: i for i, h in enumerate(to_encode + cached_order)}

    first_pixels: dict[str, np.ndarray] = {}
    image_index: list[int] = []
    hit_rows: set[int] = set()
    for row, post in enumerate(posts):
        sha = post.image_sha256
        if sha is None or post.pixels is None:
            image_index.append(NO_IMAGE)
            continue
        first_pixels.setdefault(sha, post.pixels)
        image_index.append(table_index[sha])
        if sha in cached:
            hit_rows.add(row)

    pixels = (
        np.stack([first_pixels[h] for h in to_encode])
        if to_encode
        else np.zeros((0, image_size, image_size, 3), dtype=np.uint8)
    )
    embeddings = (
        np.stack([cached[h] for h in cached_order])
        if cached_order
        else np.zeros((0, dim), dtype=np.float32)
    )
    request = ScoreRequest(
        captions=[p.post.caption for p in posts],
        image_index=image_index,
        pixels=pixels,
        cached_embeddings=embeddings,
    )
    return BuiltRequest(request=request, encode_hashes=to_encode, cache_hit_rows=hit_rows)
