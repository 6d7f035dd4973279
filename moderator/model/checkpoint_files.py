"""The files of a checkpoint directory: their names, reading and writing them, the content hash.

Every checkpoint directory holds config.json; a fusion checkpoint (and the starter's caption
head, which is one) also holds its weights:

    config.json            the config (StarterConfig or FusionConfig), JSON
    head.safetensors       fusion head weights and input statistics
    backbone.safetensors   only after stage 2: the fine-tuned encoder weights

Nothing is pickled: tensors travel as safetensors, everything else as JSON. This module knows
files, not models: it imports no model class, so every loader and writer can import it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from pydantic import BaseModel, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from moderator.model.errors import ModelLoadError

CONFIG_FILE = "config.json"
HEAD_FILE = "head.safetensors"
BACKBONE_FILE = "backbone.safetensors"

ConfigT = TypeVar("ConfigT", bound=BaseModel)
# FusionConfig fields added after its first checkpoints (the image-text matching head, the
# frame attention pooling, the kNN vote's examples, object tags).
ADDED_FIELDS = (
    "itm",
    "itm_weights",
    "frame_attention",
    "frame_attention_weights",
    "neighbours",
    "neighbours_weights",
    "object_tags",
)


class WeightsConfig(Protocol):
    """A checkpoint config that names its weights files (FusionConfig, SingleStreamConfig)."""

    @property
    def head_weights(self) -> str: ...

    @property
    def backbone_weights(self) -> str | None: ...

    def model_dump(self, *, mode: str = ...) -> dict[str, Any]: ...


def read_json(path: Path) -> Any:
    """Parse a JSON file, turning every failure into a ModelLoadError that names the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelLoadError(f"missing {path.name} in checkpoint directory {path.parent}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"cannot read {path}: {e}") from e
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from e


def read_config_json(directory: Path) -> dict[str, Any]:
    """The parsed config.json of `directory`, which must be a JSON object."""
    path = directory / CONFIG_FILE
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ModelLoadError(f"invalid {path}: expected a JSON object, got {type(raw).__name__}")
    return raw


def read_config(model: type[ConfigT], directory: Path) -> ConfigT:
    """config.json of `directory`, read and validated as `model`."""
    return parse_config(model, directory, read_config_json(directory))


def parse_config(model: type[ConfigT], directory: Path, raw: Any) -> ConfigT:
    """Validate the parsed config.json of `directory` as `model`; errors name the file."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ModelLoadError.from_validation(directory / CONFIG_FILE, e) from e


def write_config(directory: Path, config: BaseModel) -> None:
    """config.json: the config's JSON dump, indented, fields in declaration order."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"
    (directory / CONFIG_FILE).write_text(text, encoding="utf-8")


def save_tensors(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Contiguous fp32 copies, so shared or strided tensors never trip safetensors."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file onto the CPU; a missing or unreadable file is a ModelLoadError."""
    if not path.is_file():
        raise ModelLoadError(f"missing {path.name} in checkpoint directory {path.parent}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {path} as safetensors: {e}") from e


def content_hash(directory: Path, config: WeightsConfig) -> str:
    """sha256 over the canonical config and every weights file: changes when any of them does."""
    canonical = config.model_dump(mode="json")
    # Fields added after checkpoints were written count only when set, so every checkpoint
    # written before them keeps its version (tests/unit/test_model_version.py).
    for field in ADDED_FIELDS:
        if canonical.get(field) is None:
            canonical.pop(field, None)
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode("utf-8"))
    # Optional files (ITM head, frame attention, kNN examples) only where there are some, so
    # other checkpoints keep their versions.
    for name in (
        config.head_weights,
        config.backbone_weights,
        getattr(config, "itm_weights", None),
        getattr(config, "frame_attention_weights", None),
        getattr(config, "neighbours_weights", None),
    ):
        if name is not None:
            path = directory / name
            if path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


def checkpoint_version(name: str, directory: Path, config: WeightsConfig) -> str:
    """Model version of the weights `config` describes in `directory`: `<name>-<12 hex>`.

    The 12 hex digits are the start of content_hash (the canonical config and every weights
    file), so changing either gives a new version, and with it new feature-cache keys. name is
    the fusion config's `name`, or for the starter's caption head the starter's own
    `model_version`. The model appends InferenceOptions.version_suffix() itself. Every
    checkpoint already written carries a version made by this formula (decisions and caches
    refer to it): tests/unit/test_model_version.py pins the packaged starter's.
    """
    return f"{name}-{content_hash(directory, config)[:12]}"
