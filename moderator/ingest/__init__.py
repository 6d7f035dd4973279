"""Turning raw Kafka records into validated posts and model-ready pixels."""

from moderator.ingest.image import decode_image
from moderator.ingest.post_decoder import DecodedPost, decode_post

__all__ = ["DecodedPost", "decode_image", "decode_post"]
