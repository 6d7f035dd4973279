"""The single-stream (VisualBERT) checkpoint: its config.json, loading, saving, and the
ModerationModel the Classifier deployment serves (moderator/model/single_stream.py has the
network and how it fits the embed / score split). The two-stream LXMERT checkpoint
(two_stream_model.py) is served, loaded and saved by the same code: both read token ids and
grid features."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from moderator.model.backbone_base import ImagePreprocessing
from moderator.model.base import check_pixels, check_score_inputs
from moderator.model.checkpoint_files import (
    CONFIG_FILE,
    checkpoint_version,
    load_tensors,
    parse_config,
    save_tensors,
    write_config,
)
from moderator.model.errors import ModelLoadError
from moderator.model.fusion_config import check_categories
from moderator.model.inference import (
    InferenceOptions,
    apply_cuda_flags,
    precision_context,
    prepare_module,
    to_numpy,
    validate_options,
)
from moderator.model.single_stream import (
    WEIGHTS_FILE,
    GridImageEncoder,
    GridSpec,
    SingleStreamClassifier,
    SingleStreamSpec,
    load_tokenizer,
    token_ids,
)

logger = logging.getLogger(__name__)


class GridCheckpointConfig(BaseModel):
    """config.json of a model over token ids and grid features (kinds "visualbert" and
    "lxmert": the subclasses fix `kind`, `spec` and the weights file); the loader refuses any
    mismatch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = 1
    kind: str
    name: str = Field(min_length=1, description="model_version is name-<content hash>")
    categories: list[str] = Field(min_length=1)
    spec: GridSpec
    preprocessing: ImagePreprocessing
    reads_image_text: bool = Field(
        default=False, description="trained on caption and image text joined (model_text)"
    )
    thresholds: dict[str, float] = Field(default_factory=dict)
    head_weights: str = Field(description="the whole classifier's weights")
    backbone_weights: None = Field(
        default=None, description="the image encoder is the packaged, frozen Lite0"
    )
    training: dict[str, Any] = Field(default_factory=dict, description="provenance, free-form")

    @model_validator(mode="after")
    def _categories_consistent(self) -> Self:
        check_categories(self.categories, self.thresholds)
        return self


class SingleStreamConfig(GridCheckpointConfig):
    """config.json of a "visualbert" checkpoint."""

    kind: Literal["visualbert"] = "visualbert"
    spec: SingleStreamSpec
    head_weights: str = Field(default=WEIGHTS_FILE, description="the whole classifier's weights")


class SingleStreamModerationModel:
    """Implements ModerationModel for a VisualBERT (or LXMERT) checkpoint: a classifier that
    maps token ids [B, L], grid features [B, V, visual_dim] and has_image [B] to logits."""

    def __init__(
        self,
        config: GridCheckpointConfig,
        classifier: nn.Module,
        tokenizer: Any,
        images: GridImageEncoder,
        version: str,
        options: InferenceOptions | None = None,
    ) -> None:
        self.config = config
        self.options = options or InferenceOptions()
        validate_options(self.options)
        self.model_version = version + self.options.version_suffix()
        self.categories = list(config.categories)
        self.image_size = config.preprocessing.image_size
        self.image_embedding_dim = images.dim
        self.text_embedding_dim = config.spec.max_text_tokens
        self.reads_image_text = config.reads_image_text
        self.tokenizer = tokenizer
        apply_cuda_flags(self.options)
        self.images = images
        self.images.to(self.options.device)
        self.images.net = prepare_module(self.images.net, self.options)
        self.classifier = prepare_module(classifier, self.options)
        self._empty_caption = self.embed_texts([""])[0]

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 RGB [N, S, S, 3] → grid features [N, grid²·1280]."""
        check_pixels(pixels, self.image_size)
        with precision_context(self.options):
            return self.images.encode(pixels)

    def embed_texts(self, captions: list[str]) -> np.ndarray:
        """Captions → token ids as float32 [N, max_text_tokens] (what score() reads)."""
        return token_ids(self.tokenizer, captions, self.text_embedding_dim)

    def score(
        self,
        text_embeddings: np.ndarray,
        has_text: np.ndarray,
        image_embeddings: np.ndarray,
        has_image: np.ndarray,
    ) -> np.ndarray:
        """Sigmoid scores [B, categories]; a row without a caption reads [CLS] [SEP]."""
        check_score_inputs(self, text_embeddings, has_text, image_embeddings, has_image)
        if not len(has_text):
            return np.zeros((0, len(self.categories)), dtype=np.float32)
        ids = np.where(has_text[:, None], text_embeddings, self._empty_caption)
        return self.score_features(ids, image_embeddings, has_image)

    def score_features(
        self, ids: np.ndarray, grid: np.ndarray, has_image: np.ndarray
    ) -> np.ndarray:
        """The classifier alone on token ids and grid features (training, evaluation)."""
        device = self.options.device
        spec = self.config.spec
        visual = np.asarray(grid, dtype=np.float32).reshape(len(ids), -1, spec.visual_dim)
        with precision_context(self.options):
            logits = self.classifier(
                torch.from_numpy(np.asarray(ids)).long().to(device),
                torch.from_numpy(np.ascontiguousarray(visual)).to(device),
                torch.from_numpy(np.asarray(has_image, dtype=bool)).to(device),
            )
            return to_numpy(torch.sigmoid(logits.float()))


def load_single_stream(
    directory: Path, raw: dict[str, Any], options: InferenceOptions | None = None
) -> SingleStreamModerationModel:
    """Checkpoint loader for kind "visualbert"; every check runs before the model is usable."""
    config = parse_config(SingleStreamConfig, directory, raw)
    classifier = SingleStreamClassifier(config.spec, len(config.categories))
    return load_grid_model(directory, config, classifier, options)


def load_grid_model(
    directory: Path,
    config: GridCheckpointConfig,
    classifier: nn.Module,
    options: InferenceOptions | None = None,
) -> SingleStreamModerationModel:
    """The weights of `directory` into `classifier` (built from the validated `config`), the
    tokenizer and the grid encoder: the served model."""
    options = options or InferenceOptions()
    validate_options(options)
    path = directory / config.head_weights
    state = load_tensors(path)
    try:
        classifier.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelLoadError(
            f"invalid {path}: weights do not fit the spec in {directory / CONFIG_FILE}: {e}"
        ) from e
    tokenizer = load_tokenizer(config.spec)
    images = GridImageEncoder(config.spec.grid)
    version = checkpoint_version(config.name, directory, config)
    return SingleStreamModerationModel(
        config, classifier.eval(), tokenizer, images, version, options
    )


def save_single_stream(
    directory: Path, config: GridCheckpointConfig, classifier: nn.Module
) -> Path:
    """Write config.json and the classifier's weights (safetensors)."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in classifier.state_dict().items()}
    save_tensors(directory / config.head_weights, state)
    assert isinstance(config, BaseModel), "a checkpoint config is a pydantic model"
    write_config(directory, config)
    logger.info("wrote %s checkpoint %s to %s", config.kind, config.name, directory)
    return directory
