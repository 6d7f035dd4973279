"""Errors raised while reading training data or training."""

from __future__ import annotations

from moderator.errors import ModeratorError


class TrainingDataError(ModeratorError):
    """A data file or its field mapping is wrong; the message names the file, line and field."""


class TrainingDeviceError(ModeratorError):
    """The --device asked for cannot be used here; the message says what to use instead."""
