"""Moderation models: the ModerationModel interface, checkpoint loading and pretrained parts."""

from moderator.model.base import ModerationModel
from moderator.model.checkpoint import load_model, starter_checkpoint_dir
from moderator.model.errors import ModelLoadError

__all__ = ["ModelLoadError", "ModerationModel", "load_model", "starter_checkpoint_dir"]
