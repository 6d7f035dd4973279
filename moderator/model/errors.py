"""Errors raised by the model package."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from moderator.errors import ModeratorError


class ModelLoadError(ModeratorError):
    """A checkpoint or pretrained part cannot be loaded; the message says what to fix."""

    @classmethod
    def from_validation(cls, path: Path, error: ValidationError) -> ModelLoadError:
        """Name the file and every offending field, e.g. `caption_calibration.scale`."""
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in e['loc']) or '<root>'}': {e['msg']}"
            for e in error.errors()
        )
        return cls(f"invalid {path}: {problems}")
