"""Redis cache of feature extractions, keyed by content hash and model version."""

from moderator.cache.features import (
    KINDS,
    FeatureCache,
    FeatureKind,
)
from moderator.cache.memory import MemoryBound, ensure_memory_bound
from moderator.cache.signals import SignalCache

__all__ = [
    "KINDS",
    "FeatureCache",
    "FeatureKind",
    "MemoryBound",
    "SignalCache",
    "ensure_memory_bound",
]
