"""Redis cache of feature extractions, keyed by content hash and model version."""

from moderator.cache.features import (
    KINDS,
    FeatureCache,
    FeatureKind,
    caption_digest,
    normalise_caption,
)

__all__ = ["KINDS", "FeatureCache", "FeatureKind", "caption_digest", "normalise_caption"]
