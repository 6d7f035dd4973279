"""config.json of a fine-tuned "fusion" checkpoint, and reading/writing its safetensors files.

A fusion checkpoint is a directory:

    config.json            this FusionConfig (backbone, dims, categories, head, preprocessing)
    head.safetensors       fusion head weights and input statistics
    backbone.safetensors   only after stage 2: the fine-tuned encoder weights

Nothing is pickled: tensors travel as safetensors, everything else as JSON.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from moderator.model.backbone_base import BackboneSpec, ImagePreprocessing
from moderator.model.errors import ModelLoadError
from moderator.model.fusion_heads import HeadConfig

CONFIG_FILE = "config.json"
Modalities = Literal["both", "text", "image"]
HEAD_FILE = "head.safetensors"
BACKBONE_FILE = "backbone.safetensors"


class FusionConfig(BaseModel):
    """Everything needed to rebuild the model; the loader refuses any mismatch with the weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = 1
    kind: Literal["fusion"] = "fusion"
    name: str = Field(min_length=1, description="model_version is name-<content hash>")
    categories: list[str] = Field(min_length=1)
    backbone: BackboneSpec
    text_embedding_dim: int = Field(gt=0)
    image_embedding_dim: int = Field(gt=0)
    preprocessing: ImagePreprocessing
    head: HeadConfig
    modalities: Modalities = Field(
        description="what the head was trained on: 'text' ignores images when scoring (a "
        "caption-only data set), 'image' ignores captions (an ablation), 'both' uses both"
    )
    reads_image_text: bool = Field(
        default=False,
        description="trained on caption and image text joined (moderator.text.model_text); the "
        "worker then sends the text OCR read from the image along with the caption",
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="per category: the threshold chosen on validation"
    )
    head_weights: str = HEAD_FILE
    backbone_weights: str | None = Field(
        default=None, description="fine-tuned encoder weights (stage 2); None: pretrained"
    )
    training: dict[str, Any] = Field(default_factory=dict, description="provenance, free-form")

    @model_validator(mode="after")
    def _categories_consistent(self) -> FusionConfig:
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("categories has duplicates")
        unknown = sorted(set(self.thresholds) - set(self.categories))
        if unknown:
            raise ValueError(f"thresholds names categories not in categories: {unknown}")
        if any(not 0.0 <= t <= 1.0 for t in self.thresholds.values()):
            raise ValueError("thresholds must lie in [0, 1]")
        return self


def read_fusion_config(directory: Path, raw: dict[str, Any]) -> FusionConfig:
    try:
        return FusionConfig.model_validate(raw)
    except ValidationError as e:
        raise ModelLoadError.from_validation(directory / CONFIG_FILE, e) from e


def write_config(directory: Path, config: FusionConfig) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"
    (directory / CONFIG_FILE).write_text(text, encoding="utf-8")


def save_tensors(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Contiguous fp32 copies, so shared or strided tensors never trip safetensors."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelLoadError(f"missing {path.name} in checkpoint directory {path.parent}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {path} as safetensors: {e}") from e


def content_hash(directory: Path, config: FusionConfig) -> str:
    """sha256 over the canonical config and every weights file: changes when any of them does."""
    digest = hashlib.sha256(
        json.dumps(config.model_dump(mode="json"), sort_keys=True).encode("utf-8")
    )
    for name in (config.head_weights, config.backbone_weights):
        if name is not None:
            path = directory / name
            if path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()
