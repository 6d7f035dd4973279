"""Turning raw Kafka records into validated posts and model-ready pixels."""

from moderator.ingest.image import decode_image
from moderator.ingest.post_decoder import DecodedPost, decode_post, load_image, parse_post
from moderator.ingest.url_fetch import ImageFetcher, is_public_address

__all__ = [
    "DecodedPost",
    "ImageFetcher",
    "decode_image",
    "decode_post",
    "is_public_address",
    "load_image",
    "parse_post",
]
