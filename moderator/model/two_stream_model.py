"""The two-stream (LXMERT) checkpoint: its config.json, loading and saving. It reads the same
inputs as VisualBERT (token ids and grid features), so the served model, the loader's weight
checks and the writer are VisualBERT's (moderator/model/single_stream_model.py); the network is
moderator/model/two_stream.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from moderator.model.backbone_base import ImagePreprocessing
from moderator.model.checkpoint_files import parse_config
from moderator.model.fusion_config import check_categories
from moderator.model.inference import InferenceOptions
from moderator.model.single_stream_model import (
    SingleStreamModerationModel,
    load_grid_model,
    save_single_stream,
)
from moderator.model.two_stream import WEIGHTS_FILE, TwoStreamClassifier, TwoStreamSpec


class TwoStreamConfig(BaseModel):
    """config.json of an "lxmert" checkpoint; the loader refuses any mismatch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = 1
    kind: Literal["lxmert"] = "lxmert"
    name: str = Field(min_length=1, description="model_version is name-<content hash>")
    categories: list[str] = Field(min_length=1)
    spec: TwoStreamSpec
    preprocessing: ImagePreprocessing
    reads_image_text: bool = Field(
        default=False, description="trained on caption and image text joined (model_text)"
    )
    thresholds: dict[str, float] = Field(default_factory=dict)
    head_weights: str = Field(default=WEIGHTS_FILE, description="the whole classifier's weights")
    backbone_weights: None = Field(
        default=None, description="the image encoder is the packaged, frozen Lite0"
    )
    training: dict[str, Any] = Field(default_factory=dict, description="provenance, free-form")

    @model_validator(mode="after")
    def _categories_consistent(self) -> TwoStreamConfig:
        check_categories(self.categories, self.thresholds)
        return self


def load_two_stream(
    directory: Path, raw: dict[str, Any], options: InferenceOptions | None = None
) -> SingleStreamModerationModel:
    """Checkpoint loader for kind "lxmert"; every check runs before the model is usable."""
    config = parse_config(TwoStreamConfig, directory, raw)
    classifier = TwoStreamClassifier(config.spec, len(config.categories))
    return load_grid_model(directory, config, classifier, options)


def save_two_stream(
    directory: Path, config: TwoStreamConfig, classifier: TwoStreamClassifier
) -> Path:
    """Write config.json and the classifier's weights (safetensors)."""
    return save_single_stream(directory, config, classifier)
