"""Redis cache of feature extractions, keyed by content hash and model version."""

from moderator.cache.features import FeatureCache

__all__ = ["FeatureCache"]
