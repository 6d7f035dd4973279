"""Backbone registry: a BackboneSpec (type, id, revision) → a loaded BackboneEncoder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from moderator.model.backbone_base import BackboneEncoder, BackboneSpec, ImagePreprocessing
from moderator.model.errors import ModelLoadError

BackboneLoader = Callable[[BackboneSpec, ImagePreprocessing | None, Path | None], BackboneEncoder]


def _load_offline(
    spec: BackboneSpec, preprocessing: ImagePreprocessing | None, base_dir: Path | None
) -> BackboneEncoder:
    from moderator.model.backbone_offline import OfflineBackbone, offline_preprocessing

    return OfflineBackbone(spec, preprocessing or offline_preprocessing())


def _load_hf(
    spec: BackboneSpec, preprocessing: ImagePreprocessing | None, base_dir: Path | None
) -> BackboneEncoder:
    from moderator.model.backbone_hf import HFDualEncoderBackbone

    backbone = HFDualEncoderBackbone(spec, base_dir)
    if preprocessing is not None and preprocessing != backbone.preprocessing:
        raise ModelLoadError(
            f"preprocessing recorded in the checkpoint ({preprocessing.model_dump()}) differs from "
            f"what model {spec.id!r} declares ({backbone.preprocessing.model_dump()}): "
            "the checkpoint was trained on another model or revision"
        )
    return backbone


BACKBONE_LOADERS: dict[str, BackboneLoader] = {
    "offline": _load_offline,
    "clip": _load_hf,
    "align": _load_hf,
}


def load_backbone(
    spec: BackboneSpec,
    preprocessing: ImagePreprocessing | None = None,
    base_dir: Path | None = None,
) -> BackboneEncoder:
    """Load the backbone `spec` names; relative local paths resolve against base_dir first."""
    loader = BACKBONE_LOADERS.get(spec.type)
    if loader is None:
        raise ModelLoadError(
            f"unknown backbone type {spec.type!r}; known: {sorted(BACKBONE_LOADERS)}"
        )
    return loader(spec, preprocessing, base_dir)


def parse_backbone(text: str) -> BackboneSpec:
    """CLI form: 'offline', 'clip:ID_OR_PATH[@REVISION]' or 'align:ID_OR_PATH[@REVISION]'."""
    kind, _, rest = text.partition(":")
    if kind == "offline" and not rest:
        return BackboneSpec(type="offline", id="default")
    if kind not in ("clip", "align") or not rest:
        raise ValueError(
            f"backbone {text!r}: expected 'offline', 'clip:ID_OR_PATH[@REVISION]' "
            "or 'align:ID_OR_PATH[@REVISION]'"
        )
    model_id, _, revision = rest.partition("@")
    return BackboneSpec(type=kind, id=model_id, revision=revision or None)  # type: ignore[arg-type]


def preprocessing_for(spec: BackboneSpec, image_size: int | None) -> ImagePreprocessing | None:
    """The offline backbone at another input side (`--image-size`); None: the default."""
    if image_size is None:
        return None
    if spec.type != "offline":
        raise ValueError(f"--image-size applies to the offline backbone; {spec.type} fixes its own")
    from moderator.model.backbone_offline import offline_preprocessing

    return offline_preprocessing(image_size)
