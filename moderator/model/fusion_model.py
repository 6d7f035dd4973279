"""The fine-tuned "fusion" model: a backbone plus a fusion head, served as a ModerationModel.

embed_images and embed_texts return the backbone's embeddings, exactly what the head consumes,
so the worker's Redis cache of embeddings works as for any model. score() runs the head on
them and applies a sigmoid per category (multi-label).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moderator.model.backbone_base import BackboneEncoder
from moderator.model.backbones import load_backbone
from moderator.model.base import check_pixels, check_score_inputs
from moderator.model.checkpoint_files import (
    BACKBONE_FILE,
    CONFIG_FILE,
    checkpoint_version,
    load_tensors,
    parse_config,
    save_tensors,
    write_config,
)
from moderator.model.errors import ModelLoadError
from moderator.model.frame_attention import FRAME_ATTENTION_FILE, FrameAttention
from moderator.model.fusion_config import ITM_CATEGORY, ITM_FILE, FusionConfig, Modalities
from moderator.model.fusion_heads import FusionHead, build_head
from moderator.model.inference import (
    InferenceOptions,
    apply_cuda_flags,
    needs_warm_up,
    precision_context,
    prepare_module,
    to_numpy,
    validate_options,
    warm_up,
)
from moderator.model.neighbour_vote import (
    NEIGHBOURS_FILE,
    NeighbourVote,
    load_neighbours,
)
from moderator.model.object_tags import ImageTagger, NoImageClassifierError

logger = logging.getLogger(__name__)


class FusionModerationModel:
    """Implements ModerationModel for a trained backbone + head checkpoint."""

    def __init__(
        self,
        config: FusionConfig,
        backbone: BackboneEncoder,
        head: FusionHead,
        version: str,
        options: InferenceOptions | None = None,
        itm: FusionHead | None = None,
        frame_attention: FrameAttention | None = None,
        neighbours: NeighbourVote | None = None,
    ) -> None:
        self.config = config
        self.options = options or InferenceOptions()
        validate_options(self.options)
        self.model_version = version + self.options.version_suffix()
        # The matching head's score comes after the categories; policies read it like one.
        self.categories = list(config.categories) + ([ITM_CATEGORY] if itm is not None else [])
        self.image_size = config.preprocessing.image_size
        self.image_embedding_dim = config.image_embedding_dim
        self.text_embedding_dim = config.text_embedding_dim
        self.reads_image_text = config.reads_image_text
        self._empty_caption: np.ndarray | None = None
        self.backbone = backbone
        apply_cuda_flags(self.options)
        backbone.to(torch.device(self.options.device))
        # Copied before the encoders change precision, so serving tags exactly as training did.
        self.tagger = (
            ImageTagger.of(backbone, config.object_tags).to(backbone.device)
            if config.object_tags
            else None
        )
        for module in backbone.trainable_modules().values():
            prepare_module(module, self.options)
        self.head = prepare_module(head, self.options)
        self.itm = prepare_module(itm, self.options) if itm is not None else None
        # Trained attention pooling over a post's frames (moderator/model/frame_attention.py).
        self.frame_attention = (
            prepare_module(frame_attention, self.options) if frame_attention is not None else None
        )
        self.has_frame_attention = self.frame_attention is not None
        # The kNN vote over labelled examples (neighbour_vote.py): fp32 on the device, never int8.
        self.neighbours = (
            neighbours.to(torch.device(self.options.device)) if neighbours is not None else None
        )
        if self.options.compile:
            backbone.compile_encoders(self.options)
        if needs_warm_up(self.options):
            warm_up(self)

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 RGB [N, S, S, 3] → the backbone's image embedding [N, image_embedding_dim]."""
        check_pixels(pixels, self.image_size)
        with precision_context(self.options):
            return self.backbone.encode_images(pixels)

    def embed_texts(self, captions: list[str]) -> np.ndarray:
        """Captions → the backbone's text embedding [N, text_embedding_dim].

        A head trained on images only never reads text: zeros, without running the encoder.
        """
        if self.config.modalities == "image" or not captions:
            return np.zeros((len(captions), self.text_embedding_dim), dtype=np.float32)
        with precision_context(self.options):
            return self.backbone.encode_texts(captions)

    def score(
        self,
        text_embeddings: np.ndarray,
        has_text: np.ndarray,
        image_embeddings: np.ndarray,
        has_image: np.ndarray,
    ) -> np.ndarray:
        """Sigmoid scores [B, categories]; a head trained on captions only ignores images.

        The head was trained with the empty caption's embedding for posts without one, so rows
        without a caption get exactly that (computed once).
        """
        check_score_inputs(self, text_embeddings, has_text, image_embeddings, has_image)
        if not len(has_text):
            return np.zeros((0, len(self.categories)), dtype=np.float32)
        text = np.asarray(text_embeddings, dtype=np.float32)
        if not has_text.all():
            text = np.where(has_text[:, None], text, self._empty_caption_embedding())
        scores = self.score_embeddings(text, image_embeddings, has_image)
        if self.itm is not None:  # no caption or no image: nothing to mismatch
            scores[:, -1] *= has_text & has_image
        return scores

    def _empty_caption_embedding(self) -> np.ndarray:
        if self._empty_caption is None:
            self._empty_caption = self.embed_texts([""])[0]
        return self._empty_caption

    def score_embeddings(
        self, text: np.ndarray, image_embeddings: np.ndarray, has_image: np.ndarray
    ) -> np.ndarray:
        """The head alone on precomputed embeddings (training, evaluation, benchmarks)."""
        with precision_context(self.options):
            inputs = self._head_inputs(text, image_embeddings, has_image)
            if self.neighbours is None:
                scores = torch.sigmoid(self.head(*inputs).float())
            else:
                logits, fused = self.head.logits_and_features(*inputs)
                scores = self.neighbours.blend(torch.sigmoid(logits.float()), fused)
            if self.itm is not None:
                scores = torch.cat([scores, torch.sigmoid(self.itm(*inputs).float())], dim=1)
            return to_numpy(scores)

    def fused_features(
        self, text: np.ndarray, image_embeddings: np.ndarray, has_image: np.ndarray
    ) -> np.ndarray:
        """The head's fused representations [N, F] (what the kNN vote compares), fp32."""
        with precision_context(self.options):
            _, fused = self.head.logits_and_features(
                *self._head_inputs(text, image_embeddings, has_image)
            )
            return to_numpy(fused.float())

    def _head_inputs(
        self, text: np.ndarray, image_embeddings: np.ndarray, has_image: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the head reads (apply_modalities), as tensors on the model's device."""
        arrays = apply_modalities(text, image_embeddings, has_image, self.config.modalities)
        device = self.options.device
        text_t, image_t, has_image_t = (torch.from_numpy(a).to(device) for a in arrays)
        return text_t, image_t, has_image_t

    def frame_logits(self, image_embeddings: np.ndarray) -> np.ndarray:
        """Image embeddings [N, image_embedding_dim] → frame attention logits float32 [N]."""
        if self.frame_attention is None:
            raise ValueError(f"model {self.model_version} has no frame attention")
        image = np.ascontiguousarray(image_embeddings, dtype=np.float32)
        with precision_context(self.options):
            logits = self.frame_attention(torch.from_numpy(image).to(self.options.device))
            return to_numpy(logits.float())


def apply_modalities(
    text: np.ndarray, image: np.ndarray, has_image: np.ndarray, modalities: Modalities
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the head sees: zeros for an unused side; images only where has_image is True.

    Training and serving both go through here, so they always agree.
    """
    has_image = has_image.astype(bool)
    if modalities == "text":
        has_image = np.zeros_like(has_image)
    if modalities == "image":
        text = np.zeros_like(text)
    image = np.where(has_image[:, None], image, 0.0).astype(np.float32)
    return np.ascontiguousarray(text, dtype=np.float32), image, has_image


def load_head(directory: Path, config: FusionConfig, itm: bool = False) -> FusionHead:
    """Build the head config.head describes (with itm, the matching head config.itm describes)
    and load its weights, refusing any mismatch."""
    head_config, outputs, weights = config.head, len(config.categories), config.head_weights
    if itm:
        assert config.itm is not None and config.itm_weights is not None
        head_config, outputs, weights = config.itm, 1, config.itm_weights
    head = build_head(head_config, config.text_embedding_dim, config.image_embedding_dim, outputs)
    path = directory / weights
    state = load_tensors(path)
    expected = head.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(
            f"invalid {path}: weights do not fit head type {config.head.type!r} in "
            f"{CONFIG_FILE} (missing {missing[:4]}, unexpected {unexpected[:4]}): "
            "the head type or its options differ from the ones trained"
        )
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise ModelLoadError(
                f"invalid {path}: {key} has shape {tuple(state[key].shape)} but {CONFIG_FILE} "
                f"implies {tuple(tensor.shape)}; {_shape_hint(key, config)}"
            )
    head.load_state_dict(state, strict=True)
    return head.eval()


def _shape_hint(key: str, config: FusionConfig) -> str:
    if key.startswith("text_"):
        return f"text_embedding_dim is {config.text_embedding_dim}"
    if key.startswith("image_"):
        return f"image_embedding_dim is {config.image_embedding_dim}"
    return (
        f"check categories ({len(config.categories)}: {config.categories}) and the head options "
        f"{config.head.model_dump()}"
    )


def check_backbone(config: FusionConfig, backbone: BackboneEncoder, directory: Path) -> None:
    """The loaded backbone must produce the embedding sizes the head was trained on."""
    dims = {"text_embedding_dim": backbone.text_dim, "image_embedding_dim": backbone.image_dim}
    for field, actual in dims.items():
        if getattr(config, field) != actual:
            raise ModelLoadError(
                f"invalid {directory / CONFIG_FILE}: field '{field}': the checkpoint says "
                f"{getattr(config, field)} but backbone {config.backbone.id!r} produces {actual}"
            )


def load_backbone_weights(directory: Path, name: str, backbone: BackboneEncoder) -> None:
    """Stage-2 checkpoints carry fine-tuned encoder weights: load them strictly."""
    state = load_tensors(directory / name)
    for module_name, module in backbone.trainable_modules().items():
        prefix = f"{module_name}."
        part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(part, strict=True)
        except RuntimeError as e:
            raise ModelLoadError(
                f"invalid {directory / name}: does not fit backbone {config_id(backbone)}: {e}"
            ) from e


def config_id(backbone: BackboneEncoder) -> str:
    return f"{backbone.spec.type}:{backbone.spec.id}"


def load_fusion(
    directory: Path, raw: dict[str, Any], options: InferenceOptions | None = None
) -> FusionModerationModel:
    """Checkpoint loader for kind "fusion"; every check runs before the model is usable."""
    config = parse_config(FusionConfig, directory, raw)
    validate_options(options or InferenceOptions())
    head = load_head(directory, config)  # cheap checks first, before loading encoders
    itm = load_head(directory, config, itm=True) if config.itm is not None else None
    attention = load_frame_attention(directory, config)
    neighbours = None
    if config.neighbours is not None and config.neighbours_weights is not None:
        neighbours = load_neighbours(
            directory / config.neighbours_weights,
            config.neighbours,
            len(config.categories),
            fused_dim(head, config),
        )
    backbone = load_backbone(config.backbone, config.preprocessing, directory)
    check_backbone(config, backbone, directory)
    if config.backbone_weights is not None:
        load_backbone_weights(directory, config.backbone_weights, backbone)
    version = checkpoint_version(config.name, directory, config)
    try:
        return FusionModerationModel(
            config, backbone, head, version, options, itm, attention, neighbours
        )
    except NoImageClassifierError as e:
        raise ModelLoadError(f"invalid {directory / CONFIG_FILE}: field 'object_tags': {e}") from e


def fused_dim(head: FusionHead, config: FusionConfig) -> int:
    """Size of the head's fused representation (the input of its final linear layer)."""
    with torch.inference_mode():
        _, fused = head.logits_and_features(
            torch.zeros(1, config.text_embedding_dim),
            torch.zeros(1, config.image_embedding_dim),
            torch.zeros(1, dtype=torch.bool),
        )
    return int(fused.shape[1])


def load_frame_attention(directory: Path, config: FusionConfig) -> FrameAttention | None:
    """The frame attention config.frame_attention describes, its weights loaded strictly."""
    if config.frame_attention is None or config.frame_attention_weights is None:
        return None
    module = FrameAttention(config.frame_attention, config.image_embedding_dim)
    path = directory / config.frame_attention_weights
    try:
        module.load_state_dict(load_tensors(path), strict=True)
    except RuntimeError as e:
        raise ModelLoadError(
            f"invalid {path}: does not fit frame_attention {config.frame_attention.model_dump()} "
            f"over image_embedding_dim {config.image_embedding_dim}: {e}"
        ) from e
    return module.eval()


def save_fusion_checkpoint(
    directory: Path,
    config: FusionConfig,
    head: FusionHead,
    backbone: BackboneEncoder | None = None,
    itm: FusionHead | None = None,
    frame_attention: FrameAttention | None = None,
    neighbours: NeighbourVote | None = None,
) -> Path:
    """Write config.json and the safetensors files; pass backbone after stage-2 fine-tuning,
    itm with an image-text matching head, frame_attention with a trained frame pooling,
    neighbours with the kNN vote's labelled examples."""
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(directory / config.head_weights, head.state_dict())
    if itm is not None:
        config = config.model_copy(update={"itm": itm.config, "itm_weights": ITM_FILE})
        save_tensors(directory / ITM_FILE, itm.state_dict())
    if frame_attention is not None:
        config = config.model_copy(
            update={
                "frame_attention": frame_attention.config,
                "frame_attention_weights": FRAME_ATTENTION_FILE,
            }
        )
        save_tensors(directory / FRAME_ATTENTION_FILE, frame_attention.state_dict())
    if neighbours is not None:
        config = config.model_copy(
            update={"neighbours": neighbours.config, "neighbours_weights": NEIGHBOURS_FILE}
        )
        save_tensors(directory / NEIGHBOURS_FILE, neighbours.tensors())
    if backbone is not None:
        config = config.model_copy(update={"backbone_weights": BACKBONE_FILE})
        state = {
            f"{name}.{key}": value
            for name, module in backbone.trainable_modules().items()
            for key, value in module.state_dict().items()
        }
        save_tensors(directory / BACKBONE_FILE, state)
    write_config(directory, config)
    logger.info("wrote fusion checkpoint %s to %s", config.name, directory)
    return directory
