"""Hugging Face dual encoders (CLIP, ALIGN) as backbones, loaded strictly offline.

`id` is a hub id (resolved in the local Hugging Face cache only, never downloaded at load time)
or a local directory written by `save_pretrained` with a tokenizer beside it. Embeddings are
the models' own `get_image_features` / `get_text_features` outputs (`.pooler_output` in
transformers 5).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from moderator.model.backbone_base import BackboneSpec, ImagePreprocessing, TorchBackbone
from moderator.model.errors import ModelLoadError

logger = logging.getLogger(__name__)

DEFAULT_MAX_TEXT_LENGTH = 128
# Used when a model directory has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resolve_model_dir(spec: BackboneSpec, base_dir: Path | None = None) -> Path:
    """A local directory for spec.id: a path as is (relative to base_dir), or a cached hub id."""
    candidate = Path(spec.id).expanduser()
    if base_dir is not None and not candidate.is_absolute():
        relative = base_dir / candidate
        if relative.is_dir():
            return relative
    if candidate.is_dir():
        return candidate
    if spec.id.startswith((".", "/", "~")) or spec.id.count("/") > 1:
        raise ModelLoadError(f"{spec.type} model directory {spec.id} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(spec.id, revision=spec.revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError) as e:
        revision = f" --revision {spec.revision}" if spec.revision else ""
        raise ModelLoadError(
            f"{spec.type} model {spec.id!r} is not in the local Hugging Face cache, and moderator "
            "never downloads weights at load time. On a machine with network access run "
            f"`hf download {spec.id}{revision}` and ship the cache (HF_HOME), or save the model "
            "with save_pretrained (plus its tokenizer) into a directory and give that path"
        ) from e


def read_preprocessing(
    model_dir: Path, image_size: int, max_text_length: int
) -> ImagePreprocessing:
    """Pixel scaling from preprocessor_config.json when there is one, else CLIP's defaults."""
    path = model_dir / "preprocessor_config.json"
    raw: dict[str, Any] = {}
    if path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"cannot read {path}: {e}") from e
    rescale = float(raw.get("rescale_factor", 1 / 255)) if raw.get("do_rescale", True) else 1.0
    return ImagePreprocessing(
        image_size=image_size,
        rescale_factor=rescale,
        rescale_offset=bool(raw.get("rescale_offset", False)),
        normalize=bool(raw.get("do_normalize", True)),
        mean=tuple(raw.get("image_mean", CLIP_MEAN)),
        std=tuple(raw.get("image_std", CLIP_STD)),
        max_text_length=max_text_length,
    )


class HFDualEncoderBackbone(TorchBackbone):
    """CLIPModel or AlignModel plus its tokenizer."""

    def __init__(self, spec: BackboneSpec, base_dir: Path | None = None) -> None:
        # Imported here: transformers is slow to import and most processes never need it.
        from transformers import AlignModel, AutoTokenizer, CLIPModel

        model_class: Any = {"clip": CLIPModel, "align": AlignModel}.get(spec.type)
        if model_class is None:
            raise ModelLoadError(f"backbone type {spec.type!r} is not a Hugging Face dual encoder")
        model_dir = resolve_model_dir(spec, base_dir)
        try:
            self.model: nn.Module = model_class.from_pretrained(model_dir, local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise ModelLoadError(f"cannot load {spec.type} model from {model_dir}: {e}") from e
        self.model.eval()
        self.spec = spec
        config: Any = self.model.config
        max_positions = int(getattr(config.text_config, "max_position_embeddings", 512))
        self.preprocessing = read_preprocessing(
            model_dir,
            int(config.vision_config.image_size),
            min(DEFAULT_MAX_TEXT_LENGTH, max_positions),
        )
        # Dimensions differ by family (ALIGN's image side is unprojected): measure them.
        size = self.preprocessing.image_size
        probe = np.zeros((1, size, size, 3), dtype=np.uint8)
        with torch.inference_mode():
            image = self.image_features(self.preprocessing.to_tensor(probe))
            self.image_dim = int(image.shape[1])
            self.text_dim = int(self.text_features(["probe"]).shape[1])
        logger.info(
            "%s backbone %s ready (image %d-d, text %d-d)",
            spec.type,
            spec.id,
            self.image_dim,
            self.text_dim,
        )

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        output: Any = self.model.get_image_features(pixel_values=images.to(dtype))  # type: ignore[operator]
        pooled: torch.Tensor = output.pooler_output
        return pooled

    def tokenise(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.preprocessing.max_text_length,
            return_tensors="pt",
        )
        # Only what get_text_features takes (BERT-style tokenizers add token_type_ids).
        return {key: batch[key].to(self.device) for key in ("input_ids", "attention_mask")}

    def text_forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        output: Any = self.model.get_text_features(**batch)  # type: ignore[operator]
        pooled: torch.Tensor = output.pooler_output
        return pooled

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}
