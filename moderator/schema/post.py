"""Post contract, version 1: what producers put on the posts topic (JSON, key = post_id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

POST_SCHEMA_VERSION = 1
MAX_CAPTION_CHARS = 10_000


class Post(BaseModel):
    """One post: a caption and at most one image, inline (base64) or by URL.

    Unknown top-level fields are kept (``extra="allow"``) so producers can add
    fields without breaking older workers.
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
    lang: str | None = Field(default=None, max_length=35, description="BCP 47 language tag.")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_image_source(self) -> Post:
        if self.image_b64 is not None and self.image_url is not None:
            raise ValueError("give image_b64 or image_url, not both")
        return self

    @property
    def has_image(self) -> bool:
        return self.image_b64 is not None or self.image_url is not None
