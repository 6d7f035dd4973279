"""Starter moderation model: ImageNet classes, a caption head trained on real tweets, prototypes.

Image categories sum the Lite0 softmax over mapped ImageNet classes. Caption categories come from
either a caption head (a small fusion head trained with `moderator train` on frozen MiniLM
embeddings, run caption-only) or, zero-shot, from the caption's best cosine similarity to a
category's prototype phrases through a logistic function. It is the demo's default model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moderator.model.base import check_pixels, check_score_inputs
from moderator.model.checkpoint_files import CONFIG_FILE
from moderator.model.efficientnet_lite import (
    FEATURE_DIM,
    NUM_CLASSES,
    load_efficientnet_lite0,
    pixels_to_tensor,
)
from moderator.model.errors import ModelLoadError
from moderator.model.fusion_heads import FusionHead
from moderator.model.fusion_model import load_head
from moderator.model.inference import (
    InferenceOptions,
    apply_cuda_flags,
    compile_function,
    mark_dynamic,
    needs_warm_up,
    precision_context,
    prepare_module,
    to_numpy,
    validate_options,
    warm_up,
)
from moderator.model.starter_config import StarterSpec, read_starter_spec
from moderator.model.text_encoder import TEXT_EMBEDDING_DIM, MiniLMTextEncoder

IMAGE_CHUNK = 16

logger = logging.getLogger(__name__)


class StarterModerationModel:
    """Implements ModerationModel with pretrained encoders and a reviewed category mapping."""

    image_embedding_dim = FEATURE_DIM
    text_embedding_dim = TEXT_EMBEDDING_DIM

    def __init__(self, spec: StarterSpec, options: InferenceOptions | None = None) -> None:
        config = spec.config
        self.options = options or InferenceOptions()
        validate_options(self.options)
        self.model_version = spec.model_version + self.options.version_suffix()
        self.categories = list(config.categories)
        self.image_size = config.image_size
        self.reads_image_text = config.reads_image_text
        self._calibration = config.caption_calibration
        self._image_net = load_efficientnet_lite0()
        self._text_encoder = MiniLMTextEncoder()
        image_categories = [c for c in self.categories if c in spec.imagenet_classes]
        caption_categories = [c for c in self.categories if c in config.caption_prototypes]
        self._image_columns = [self.categories.index(c) for c in image_categories]
        self._caption_columns = [self.categories.index(c) for c in caption_categories]
        self._class_to_category = _class_matrix(spec, image_categories)
        # Prototype embeddings are fixed, so encode them once rather than per batch.
        self._prototypes = [
            self._text_encoder.encode(config.caption_prototypes[c]) for c in caption_categories
        ]
        self._head: FusionHead | None = None
        self._head_columns: list[int] = []
        head_config, head_dir = spec.caption_head, spec.caption_head_dir
        if head_config is not None and head_dir is not None:
            dims = (head_config.text_embedding_dim, head_config.image_embedding_dim)
            if dims != (TEXT_EMBEDDING_DIM, FEATURE_DIM):
                raise ModelLoadError(
                    f"invalid {head_dir / CONFIG_FILE}: embedding dims {dims} do not match the "
                    f"starter's encoders ({TEXT_EMBEDDING_DIM}, {FEATURE_DIM})"
                )
            self._head = prepare_module(load_head(head_dir, head_config), self.options)
            self._head_columns = [self.categories.index(c) for c in head_config.categories]
        # Prototypes above were encoded before this point: on the CPU in fp32 whatever the options.
        apply_cuda_flags(self.options)
        prepare_module(self._image_net, self.options)
        prepare_module(self._text_encoder.model, self.options)
        self._text_encoder.device = torch.device(self.options.device)
        self._image_features = self._image_net.forward_features
        if self.options.compile:
            self._image_features = compile_function(self._image_net.forward_features, self.options)
            self._text_encoder.compile(self.options)
        if needs_warm_up(self.options):
            warm_up(self)
        logger.info("starter model %s ready: categories %s", self.model_version, self.categories)

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 RGB [N, S, S, 3] → pooled Lite0 features [N, 1280].

        Not normalised: score() applies the ImageNet head to them.
        """
        check_pixels(pixels, self.image_size)
        if len(pixels) == 0:
            return np.zeros((0, self.image_embedding_dim), dtype=np.float32)
        # Encode in chunks: activations of a 64-image batch take ~1 GiB and the allocator
        # keeps that peak resident; chunks of 16 cost the same time at a quarter of the memory.
        chunks = []
        with precision_context(self.options):
            for start in range(0, len(pixels), IMAGE_CHUNK):
                tensor = pixels_to_tensor(pixels[start : start + IMAGE_CHUNK], self.options.device)
                if self.options.compile:
                    mark_dynamic(tensor, 0)
                chunks.append(to_numpy(self._image_features(tensor)))
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def embed_texts(self, captions: list[str]) -> np.ndarray:
        """Captions → unit-length MiniLM embeddings [N, 384]."""
        if not captions:
            return np.zeros((0, self.text_embedding_dim), dtype=np.float32)
        with precision_context(self.options):
            return self._text_encoder.encode(captions)

    def score(
        self,
        text_embeddings: np.ndarray,
        has_text: np.ndarray,
        image_embeddings: np.ndarray,
        has_image: np.ndarray,
    ) -> np.ndarray:
        """Scores in [0, 1]; a post lacking a modality scores 0 on that modality's categories."""
        check_score_inputs(self, text_embeddings, has_text, image_embeddings, has_image)
        scores = np.zeros((len(has_text), len(self.categories)), dtype=np.float32)
        scores[:, self._image_columns] = self._score_images(image_embeddings, has_image)
        rows = np.flatnonzero(has_text).tolist()
        if rows:
            texts = np.asarray(text_embeddings[rows], dtype=np.float32)
            if self._prototypes:
                scores[np.ix_(rows, self._caption_columns)] = self._score_prototypes(texts)
            if self._head is not None:
                # A category with both sources takes the larger: the head knows the slurs and
                # insults of real tweets, the prototypes cover slur-free statements it misses.
                columns = np.ix_(rows, self._head_columns)
                scores[columns] = np.maximum(scores[columns], self._score_head(self._head, texts))
        return scores

    def _score_images(self, embeddings: np.ndarray, has_image: np.ndarray) -> np.ndarray:
        out = np.zeros((len(embeddings), len(self._image_columns)), dtype=np.float32)
        if not has_image.any():
            return out
        features = torch.from_numpy(np.array(embeddings[has_image], dtype=np.float32))
        # fp32 (no autocast) whatever the precision, as before: the ImageNet softmax is cheap.
        with torch.inference_mode():
            logits = self._image_net.classify(features.to(self.options.device))
            probs = to_numpy(logits.softmax(dim=-1))
        out[has_image] = np.clip(probs @ self._class_to_category, 0.0, 1.0)
        return out

    def _score_prototypes(self, texts: np.ndarray) -> np.ndarray:
        """Caption embeddings [R, 384] → zero-shot prototype scores [R, prototype categories]."""
        similarity = np.stack([(texts @ p.T).max(axis=1) for p in self._prototypes], axis=1)
        calibration = self._calibration
        logits = (similarity.astype(np.float64) - calibration.center) / calibration.scale
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def _score_head(self, head: FusionHead, texts: np.ndarray) -> np.ndarray:
        """Caption embeddings [R, 384] → trained caption-head scores, run without an image."""
        rows, device = len(texts), self.options.device
        with precision_context(self.options):
            logits = head(
                torch.from_numpy(np.ascontiguousarray(texts, dtype=np.float32)).to(device),
                torch.zeros((rows, self.image_embedding_dim), device=device),
                torch.zeros(rows, dtype=torch.bool, device=device),
            )
            return to_numpy(torch.sigmoid(logits.float()))


def _class_matrix(spec: StarterSpec, image_categories: list[str]) -> np.ndarray:
    """0/1 matrix [1000, C]: probabilities @ matrix sums each category's ImageNet classes."""
    matrix = np.zeros((NUM_CLASSES, len(image_categories)), dtype=np.float32)
    for column, category in enumerate(image_categories):
        for imagenet_class in spec.imagenet_classes[category]:
            matrix[imagenet_class.index, column] = 1.0
    return matrix


def load_starter(
    directory: Path, raw_config: dict[str, Any], options: InferenceOptions | None = None
) -> StarterModerationModel:
    """Checkpoint loader for kind "starter"."""
    return StarterModerationModel(read_starter_spec(directory, raw_config), options)
