"""The two-stream (LXMERT) checkpoint: its config.json, loading and saving. It reads the same
inputs as VisualBERT (token ids and grid features), so the served model, the loader's weight
checks and the writer are VisualBERT's (moderator/model/single_stream_model.py); the network is
moderator/model/two_stream.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from moderator.model.checkpoint_files import parse_config
from moderator.model.inference import InferenceOptions
from moderator.model.single_stream_model import (
    GridCheckpointConfig,
    SingleStreamModerationModel,
    load_grid_model,
    save_single_stream,
)
from moderator.model.two_stream import WEIGHTS_FILE, TwoStreamClassifier, TwoStreamSpec


class TwoStreamConfig(GridCheckpointConfig):
    """config.json of an "lxmert" checkpoint."""

    kind: Literal["lxmert"] = "lxmert"
    spec: TwoStreamSpec
    head_weights: str = Field(default=WEIGHTS_FILE, description="the whole classifier's weights")


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
