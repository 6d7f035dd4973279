"""Loading entry point for the serving layer: a checkpoint directory → a ModerationModel.

A checkpoint directory holds config.json, whose "kind" picks the loader, plus whatever files
that kind needs. The packaged starter checkpoint is used when no directory is given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from moderator.model.base import ModerationModel
from moderator.model.checkpoint_files import CONFIG_FILE, parse_config, read_config_json
from moderator.model.errors import ModelLoadError
from moderator.model.fusion_model import load_fusion
from moderator.model.inference import InferenceOptions, validate_options
from moderator.model.single_stream_model import load_single_stream
from moderator.model.starter_model import load_starter
from moderator.model.two_stream_model import load_two_stream

logger = logging.getLogger(__name__)

SUPPORTED_FORMAT_VERSIONS = frozenset({1})

CheckpointLoader = Callable[[Path, dict[str, Any], InferenceOptions], ModerationModel]

# kind → loader; each loader validates the full config itself.
LOADERS: dict[str, CheckpointLoader] = {
    "starter": load_starter,
    "fusion": load_fusion,
    "visualbert": load_single_stream,
    "lxmert": load_two_stream,
}


class CheckpointHeader(BaseModel):
    """The fields every config.json has, read before the kind-specific validation."""

    format_version: int
    kind: str


def starter_checkpoint_dir() -> Path:
    """Directory of the starter checkpoint shipped inside the package."""
    return Path(__file__).resolve().parent / "starter"


def load_model(
    checkpoint_dir: str | Path | None, options: InferenceOptions | None = None
) -> ModerationModel:
    """Load the checkpoint in checkpoint_dir (None: the packaged starter); raises ModelLoadError.

    options picks the device and the arithmetic (CPU fp32 by default; see inference.py). They
    are checked first, so a device or precision that cannot run here fails before any weights
    load; modules then go to options.device, and with compile the encoders are compiled and
    warmed up before this returns.
    """
    options = options or InferenceOptions()
    validate_options(options)
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else starter_checkpoint_dir()
    if not directory.is_dir():
        raise ModelLoadError(f"checkpoint directory {directory} does not exist (or is a file)")
    config_path = directory / CONFIG_FILE
    raw = read_config_json(directory)
    header = parse_config(CheckpointHeader, directory, raw)
    if header.format_version not in SUPPORTED_FORMAT_VERSIONS:
        raise ModelLoadError(
            f"invalid {config_path}: field 'format_version': {header.format_version} is not "
            f"supported (this moderator reads {sorted(SUPPORTED_FORMAT_VERSIONS)}); "
            "upgrade moderator or re-export the checkpoint"
        )
    loader = LOADERS.get(header.kind)
    if loader is None:
        raise ModelLoadError(
            f"invalid {config_path}: field 'kind': unknown kind {header.kind!r}; "
            f"known kinds: {sorted(LOADERS)}"
        )
    model = loader(directory, raw, options)
    logger.info("loaded %s checkpoint %s from %s", header.kind, model.model_version, directory)
    return model
