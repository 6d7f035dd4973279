"""Post contract, version 1: what producers put on the posts topic (JSON, key = post_id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

POST_SCHEMA_VERSION = 1
MAX_CAPTION_CHARS = 10_000
MAX_METADATA_DEPTH = 8
MAX_METADATA_ITEMS = 1_000
MAX_ALBUM_ENTRIES = 100
"""Hard contract cap on `images`; `limits.media.max_album_images` reads fewer (default 10)."""


class AlbumImage(BaseModel):
    """One further image of an album: inline (base64) or by URL, as the post's own image."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_b64: str | None = Field(default=None, description="Image bytes, standard base64.")
    image_url: str | None = Field(default=None, max_length=2048)

    @model_validator(mode="after")
    def _one_source(self) -> AlbumImage:
        if (self.image_b64 is None) == (self.image_url is None):
            raise ValueError("give exactly one of image_b64 and image_url")
        return self


class Post(BaseModel):
    """One post: a caption and its media: an image (inline base64 or by URL), further
    images (`images`, an album) and a short video, all optional.

    Unknown top-level fields are kept (``extra="allow"``) so producers can add
    fields without breaking older workers. The record's Kafka key is its post_id.
    A worker decides any post with a usable post_id, author_id and created_at: parts
    that break this contract (a caption over the cap, an unreadable image, invalid lang
    or metadata, a key that is not the post_id) are listed as the decision's problems.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: Literal[1] = Field(default=1, description="Contract version of this record.")
    post_id: str = Field(min_length=1, max_length=256, description="Unique id; also the Kafka key.")
    author_id: str = Field(min_length=1, max_length=256)
    created_at: datetime = Field(description="When the author posted, RFC 3339.")
    caption: str = Field(default="", max_length=MAX_CAPTION_CHARS)
    image_b64: str | None = Field(default=None, description="Image bytes, standard base64.")
    image_url: str | None = Field(
        default=None, max_length=2048, description="Image location; fetching is off by default."
    )
    images: list[AlbumImage] = Field(
        default_factory=list,
        max_length=MAX_ALBUM_ENTRIES,
        description="Further images after image_b64/image_url (an album), in order.",
    )
    video_b64: str | None = Field(
        default=None, description="A short video (MP4 or WebM), standard base64."
    )
    video_url: str | None = Field(
        default=None, max_length=2048, description="Video location; fetched as image_url is."
    )
    lang: str | None = Field(default=None, max_length=35, description="BCP 47 language tag.")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _bounded_metadata(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        items = 0
        stack: list[tuple[Any, int]] = [(metadata, 1)]
        while stack:
            value, depth = stack.pop()
            if depth > MAX_METADATA_DEPTH:
                raise ValueError(f"metadata nests deeper than {MAX_METADATA_DEPTH} levels")
            children = value.values() if isinstance(value, dict) else value
            if isinstance(value, dict | list):
                items += len(value)
                if items > MAX_METADATA_ITEMS:
                    raise ValueError(f"metadata holds more than {MAX_METADATA_ITEMS} items")
                stack.extend((child, depth + 1) for child in children)
        return metadata

    @model_validator(mode="after")
    def _one_image_source(self) -> Post:
        if self.image_b64 is not None and self.image_url is not None:
            raise ValueError("give image_b64 or image_url, not both")
        if self.video_b64 is not None and self.video_url is not None:
            raise ValueError("give video_b64 or video_url, not both")
        return self

    @property
    def has_image(self) -> bool:
        return self.image_b64 is not None or self.image_url is not None

    @property
    def has_video(self) -> bool:
        return self.video_b64 is not None or self.video_url is not None
