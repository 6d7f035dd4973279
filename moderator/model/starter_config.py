"""Configuration of the starter model: config.json, the ImageNet → category mapping and,
optionally, a caption head (a caption-only "fusion" checkpoint in a subdirectory)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from moderator.model.checkpoint_files import (
    CONFIG_FILE,
    checkpoint_version,
    parse_config,
    read_config,
    read_json,
)
from moderator.model.errors import ModelLoadError
from moderator.model.fusion_config import FusionConfig

IMAGENET_MAPPING_FILE = "imagenet_categories.json"


class CaptionCalibration(BaseModel):
    """Maps the best prototype cosine similarity to sigmoid((sim - center) / scale)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    center: float = Field(description="similarity that scores 0.5")
    scale: float = Field(gt=0, description="similarity change that moves the logit by 1")


class StarterConfig(BaseModel):
    """config.json of a starter checkpoint; every field is required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1]
    kind: Literal["starter"]
    model_version: str = Field(min_length=1)
    categories: list[str] = Field(min_length=1)
    image_size: int = Field(gt=0)
    image_encoder: Literal["efficientnet-lite0"]
    text_encoder: Literal["all-minilm-l6-v2"]
    caption_prototypes: dict[str, list[str]]
    caption_calibration: CaptionCalibration
    reads_image_text: bool = Field(
        default=False,
        description="caption categories read caption and image text joined (model_text)",
    )
    caption_head: str | None = Field(
        default=None,
        description="subdirectory with a caption-only fusion checkpoint on the offline backbone; "
        "it scores its own categories",
    )


class ImageNetClass(BaseModel):
    """One ImageNet-1k class; the name is stored so a reviewer can check the index."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=0, le=999)
    name: str


_MAPPING_ADAPTER = TypeAdapter(dict[str, list[ImageNetClass]])


@dataclass(frozen=True)
class StarterSpec:
    """A validated starter checkpoint: its config and its ImageNet class mapping."""

    config: StarterConfig
    imagenet_classes: dict[str, list[ImageNetClass]]
    caption_head: FusionConfig | None = None
    caption_head_dir: Path | None = None

    @property
    def model_version(self) -> str:
        """config.model_version, followed by the caption head's content hash when there is one.

        Before InferenceOptions.version_suffix(), which the model appends.
        """
        if self.caption_head is None or self.caption_head_dir is None:
            return self.config.model_version
        return checkpoint_version(
            self.config.model_version, self.caption_head_dir, self.caption_head
        )


def read_starter_spec(directory: Path, raw_config: dict[str, Any]) -> StarterSpec:
    """Validate config.json (already parsed) and read the mapping file beside it."""
    config_path = directory / CONFIG_FILE
    config = parse_config(StarterConfig, directory, raw_config)
    mapping_path = directory / IMAGENET_MAPPING_FILE
    try:
        mapping = _MAPPING_ADAPTER.validate_python(read_json(mapping_path))
    except ValidationError as e:
        raise ModelLoadError.from_validation(mapping_path, e) from e
    head_dir = directory / config.caption_head if config.caption_head else None
    head = _read_caption_head(head_dir, config_path) if head_dir else None
    _check_categories(config, mapping, head, config_path)
    return StarterSpec(
        config=config, imagenet_classes=mapping, caption_head=head, caption_head_dir=head_dir
    )


def _read_caption_head(head_dir: Path, config_path: Path) -> FusionConfig:
    head = read_config(FusionConfig, head_dir)
    if head.backbone.type != "offline" or head.backbone_weights is not None:
        raise ModelLoadError(
            f"invalid {config_path}: field 'caption_head': the starter shares its pretrained "
            f"MiniLM and Lite0, so its caption head must use the unmodified offline backbone "
            f"(got {head.backbone.type}, fine-tuned={head.backbone_weights is not None})"
        )
    return head


def _check_categories(
    config: StarterConfig,
    mapping: dict[str, list[ImageNetClass]],
    head: FusionConfig | None,
    config_path: Path,
) -> None:
    """Each category must come from exactly one modality, so no score column is left undefined."""
    categories = config.categories
    if len(set(categories)) != len(categories):
        raise ModelLoadError(f"invalid {config_path}: field 'categories' has duplicates")
    head_names: dict[str, list[str]] = {c: [c] for c in (head.categories if head else [])}
    sources = (
        ("caption_prototypes", config.caption_prototypes),
        (IMAGENET_MAPPING_FILE, mapping),
        ("caption_head", head_names),
    )
    for source, names in sources:
        unknown = sorted(set(names) - set(categories))
        if unknown:
            raise ModelLoadError(
                f"invalid {config_path}: {source} names categories not in 'categories': {unknown}"
            )
        empty = sorted(name for name, items in names.items() if not items)
        if empty:
            raise ModelLoadError(f"invalid {config_path}: {source} has empty lists for {empty}")
    # Caption prototypes and the caption head may share a category (the score is their max);
    # an image category and a caption category never do.
    caption = set(config.caption_prototypes) | set(head_names)
    both = sorted(caption & set(mapping))
    neither = [c for c in categories if c not in caption and c not in mapping]
    if both or neither:
        raise ModelLoadError(
            f"invalid {config_path}: each category needs caption prototypes (and/or the caption "
            f"head) or ImageNet classes, not both ({both}) and not neither ({neither})"
        )
