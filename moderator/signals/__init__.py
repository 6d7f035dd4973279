"""Signals: what a post shows besides the classifier's scores (image text, hashes, safety)."""

from moderator.signals.base import Signal, SignalOutput, SignalSubject, check_output
from moderator.signals.registry import (
    POLICY_SIGNAL_TYPES,
    SIGNAL_TYPES,
    build_signals,
    signal_names,
)
from moderator.signals.settings import OcrSettings, SignalSettings

__all__ = [
    "POLICY_SIGNAL_TYPES",
    "SIGNAL_TYPES",
    "OcrSettings",
    "Signal",
    "SignalOutput",
    "SignalSettings",
    "SignalSubject",
    "build_signals",
    "check_output",
    "signal_names",
]
