"""Turning raw Kafka records into posts to decide (with their problems) and model-ready pixels."""

from moderator.ingest.digests import normalise_caption
from moderator.ingest.image import decode_image
from moderator.ingest.post_decoder import (
    DecodedPost,
    ParsedPost,
    Problems,
    decode_post,
    load_image,
    parse_post,
    refuse_listed_problems,
)
from moderator.ingest.url_fetch import ImageFetcher, is_public_address

__all__ = [
    "DecodedPost",
    "ImageFetcher",
    "ParsedPost",
    "Problems",
    "decode_image",
    "decode_post",
    "is_public_address",
    "load_image",
    "normalise_caption",
    "parse_post",
    "refuse_listed_problems",
]
