"""Moderation models: the ModerationModel interface, checkpoint loading and pretrained parts."""

from moderator.model.base import ModerationModel
from moderator.model.checkpoint import load_model, starter_checkpoint_dir
from moderator.model.errors import ModelLoadError
from moderator.model.inference import InferenceOptions, Precision

__all__ = [
    "InferenceOptions",
    "ModelLoadError",
    "ModerationModel",
    "Precision",
    "load_model",
    "starter_checkpoint_dir",
]
