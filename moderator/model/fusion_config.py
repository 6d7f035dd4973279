"""FusionConfig: config.json of a fine-tuned "fusion" checkpoint, its fields and validation.

The checkpoint directory's files (config.json, head.safetensors, backbone.safetensors), reading
and writing them and the content hash live in moderator/model/checkpoint_files.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from moderator.model.backbone_base import BackboneSpec, ImagePreprocessing
from moderator.model.checkpoint_files import HEAD_FILE
from moderator.model.frame_attention import FrameAttentionConfig
from moderator.model.fusion_heads import HeadConfig
from moderator.model.neighbour_vote import NeighbourVoteConfig
from moderator.model.object_tags import MAX_TAGS

Modalities = Literal["both", "text", "image"]
# The image-text matching head's score (moderator/training/itm.py), after the categories.
ITM_CATEGORY = "image_text_mismatch"
ITM_FILE = "itm.safetensors"


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
    object_tags: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TAGS,
        description="trained on each text joined to the names of its image's top-k ImageNet "
        "classes (moderator/model/object_tags.py); None: the text alone",
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="per category: the threshold chosen on validation"
    )
    head_weights: str = HEAD_FILE
    backbone_weights: str | None = Field(
        default=None, description="fine-tuned encoder weights (stage 2); None: pretrained"
    )
    itm: HeadConfig | None = Field(
        default=None,
        description=f"image-text matching head (served as the score {ITM_CATEGORY!r}); None: none",
    )
    itm_weights: str | None = Field(default=None, description="the ITM head's weights file")
    frame_attention: FrameAttentionConfig | None = Field(
        default=None,
        description="trained attention pooling over a post's frames "
        "(moderator/model/frame_attention.py); None: none",
    )
    frame_attention_weights: str | None = Field(
        default=None, description="the frame attention's weights file"
    )
    neighbours: NeighbourVoteConfig | None = Field(
        default=None,
        description="the kNN vote over labelled examples blended with the head's score "
        "(moderator/model/neighbour_vote.py); None: the head alone",
    )
    neighbours_weights: str | None = Field(default=None, description="the labelled examples' file")
    training: dict[str, Any] = Field(default_factory=dict, description="provenance, free-form")

    @model_validator(mode="after")
    def _categories_consistent(self) -> FusionConfig:
        check_categories(self.categories, self.thresholds)
        if ITM_CATEGORY in self.categories:
            raise ValueError(f"{ITM_CATEGORY!r} is the matching head's score, not a category")
        if (self.itm is None) != (self.itm_weights is None):
            raise ValueError("itm and itm_weights go together")
        if (self.frame_attention is None) != (self.frame_attention_weights is None):
            raise ValueError("frame_attention and frame_attention_weights go together")
        if (self.neighbours is None) != (self.neighbours_weights is None):
            raise ValueError("neighbours and neighbours_weights go together")
        return self


def check_categories(categories: list[str], thresholds: dict[str, float]) -> None:
    """Every checkpoint kind: distinct categories, thresholds in [0, 1] for known ones."""
    if len(set(categories)) != len(categories):
        raise ValueError("categories has duplicates")
    unknown = sorted(set(thresholds) - set(categories))
    if unknown:
        raise ValueError(f"thresholds names categories not in categories: {unknown}")
    if any(not 0.0 <= t <= 1.0 for t in thresholds.values()):
        raise ValueError("thresholds must lie in [0, 1]")
