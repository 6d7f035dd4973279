"""Every signal the worker knows, in the order they run. Adding a signal: one line here."""

from __future__ import annotations

from typing import Literal

from moderator.signals.base import Signal
from moderator.signals.embeddings import ImageEmbeddingSignal, TextEmbeddingSignal
from moderator.signals.hashes import Md5Signal, PdqSignal, Sha256Signal
from moderator.signals.image_safety import ImageSafetySignal
from moderator.signals.ocr import OcrSignal
from moderator.signals.settings import SignalSettings

SIGNAL_TYPES: tuple[type[Signal], ...] = (
    Sha256Signal,
    Md5Signal,
    PdqSignal,
    OcrSignal,
    ImageSafetySignal,
    ImageEmbeddingSignal,
    TextEmbeddingSignal,
)
POLICY_SIGNAL_TYPES = tuple(kind for kind in SIGNAL_TYPES if kind.policy_fields())
"""The signals rules can read (``signals.<name>.<field>``): all but the vector-only ones."""


def signal_names() -> list[str]:
    return [kind.name for kind in SIGNAL_TYPES]


def build_signals(settings: SignalSettings, runs_in: Literal["ingest", "pool"]) -> list[Signal]:
    """The signals of one place that the settings switch on, in registry order (``replica``
    signals come from the model: moderator.signals.embeddings.embedding_signals)."""
    built = (kind.from_settings(settings) for kind in SIGNAL_TYPES if kind.runs_in == runs_in)
    return [signal for signal in built if signal is not None]
