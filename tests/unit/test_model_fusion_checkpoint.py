"""Fusion checkpoints on a tiny random CLIP: the ModerationModel contract, strict loading (every
mismatch refused with a clear error), versioning by content and CPU precision options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from moderator.model import ModelLoadError, ModerationModel, load_model
from moderator.model.backbone_base import BackboneSpec
from moderator.model.backbones import load_backbone
from moderator.model.base import score_captions
from moderator.model.fusion_config import FusionConfig
from moderator.model.fusion_heads import HeadConfig, build_head
from moderator.model.fusion_model import FusionModerationModel, save_fusion_checkpoint
from moderator.model.inference import InferenceOptions
from moderator.serving.messages import NO_IMAGE, NO_TEXT, ScoreRequest
from moderator.serving.scoring import score_request
from tests.unit.test_model_backbones import TINY_IMAGE_SIZE, tiny_clip_dir  # noqa: F401
from tests.unit.test_model_starter import ModerationModelContract, generated_images

CATEGORIES = ["hate", "offensive", "weapons"]


def write_checkpoint(directory: Path, clip_dir: Path, head: HeadConfig | None = None) -> Path:
    """A checkpoint with a randomly initialised (seeded) head over the tiny CLIP backbone."""
    spec = BackboneSpec(type="clip", id=str(clip_dir))
    backbone = load_backbone(spec)
    head_config = head or HeadConfig(hidden_dim=16, projection_dim=4)
    torch.manual_seed(0)
    module = build_head(head_config, backbone.text_dim, backbone.image_dim, len(CATEGORIES))
    config = FusionConfig(
        name="tiny",
        categories=CATEGORIES,
        backbone=spec,
        text_embedding_dim=backbone.text_dim,
        image_embedding_dim=backbone.image_dim,
        preprocessing=backbone.preprocessing,
        head=head_config,
        modalities="both",
        thresholds={"hate": 0.5},
    )
    return save_fusion_checkpoint(directory, config, module)


@pytest.fixture(scope="module")
def checkpoint(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return write_checkpoint(tmp_path_factory.mktemp("fusion"), tiny_clip_dir)


@pytest.fixture(scope="module")
def fusion(checkpoint: Path) -> ModerationModel:
    return load_model(checkpoint)


class TestFusionModelContract(ModerationModelContract):
    @pytest.fixture
    def model(self, fusion: ModerationModel) -> ModerationModel:
        return fusion


def test_metadata(fusion: ModerationModel) -> None:
    assert fusion.categories == CATEGORIES
    assert fusion.image_size == TINY_IMAGE_SIZE and fusion.image_embedding_dim == 16
    assert fusion.model_version.startswith("tiny-") and len(fusion.model_version) == 17


def test_embed_images_is_what_the_head_consumes(fusion: ModerationModel) -> None:
    assert isinstance(fusion, FusionModerationModel)
    images = generated_images(2, TINY_IMAGE_SIZE)
    np.testing.assert_allclose(
        fusion.embed_images(images), fusion.backbone.encode_images(images), atol=1e-6
    )


def test_score_request_matches_direct_scoring(fusion: ModerationModel) -> None:
    """Through the serving path, cached embeddings score exactly like fresh pixels and captions;
    a row without a caption scores like the empty caption the head was trained with."""
    images = generated_images(2, TINY_IMAGE_SIZE)
    captions = ["first", "second", ""]
    texts = captions[:2]
    no_images = np.zeros((0, 16), np.float32)
    no_texts = np.zeros((0, fusion.text_embedding_dim), np.float32)
    fresh = score_request(
        fusion,
        ScoreRequest([0, NO_IMAGE, 1], images, no_images, [0, 1, NO_TEXT], texts, no_texts),
    )
    cached = score_request(
        fusion,
        ScoreRequest(
            [0, NO_IMAGE, 1],
            images[:0],
            fresh.new_image_embeddings,
            [0, 1, NO_TEXT],
            [],
            fresh.new_text_embeddings,
        ),
    )
    np.testing.assert_array_equal(fresh.scores, cached.scores)
    embeddings = np.zeros((3, 16), np.float32)
    embeddings[[0, 2]] = fresh.new_image_embeddings
    direct = score_captions(fusion, captions, embeddings, np.array([True, False, True]))
    np.testing.assert_array_equal(fresh.scores, direct)
    assert isinstance(fusion, FusionModerationModel)
    text = fusion.backbone.encode_texts(captions)
    head = fusion.score_embeddings(text, embeddings, np.array([True, False, True]))
    np.testing.assert_allclose(fresh.scores, head, atol=1e-6)
    assert fresh.model_version == fusion.model_version


def test_version_changes_with_the_weights(checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(checkpoint, copy)
    assert load_model(copy).model_version == load_model(checkpoint).model_version
    from safetensors.torch import load_file, save_file

    state = load_file(str(copy / "head.safetensors"))
    state["mlp.4.bias"] = state["mlp.4.bias"] + 0.1
    save_file(state, str(copy / "head.safetensors"))
    assert load_model(copy).model_version != load_model(checkpoint).model_version


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_precision_options_stay_close_and_mark_the_version(
    checkpoint: Path, fusion: ModerationModel, precision: Any
) -> None:
    other = load_model(checkpoint, InferenceOptions(precision))
    assert other.model_version == f"{fusion.model_version}+{precision}"
    images = generated_images(2, TINY_IMAGE_SIZE)
    captions = ["a caption", "another one"]
    has_image = np.array([True, False])
    reference = score_captions(fusion, captions, fusion.embed_images(images), has_image)
    scores = score_captions(other, captions, other.embed_images(images), has_image)
    np.testing.assert_allclose(scores, reference, atol=0.05)


def edit_config(checkpoint: Path, tmp_path: Path, **changes: Any) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(checkpoint, copy)
    config = json.loads((copy / "config.json").read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"categories": ["hate", "offensive"]}, r"check categories \(2"),
        ({"text_embedding_dim": 32}, "text_mean has shape"),
        ({"head": {"type": "concat"}}, "do not fit head type 'concat'"),
        ({"head": {"unimodal_terms": False}}, "has shape"),
        ({"kind": "mystery"}, "unknown kind 'mystery'"),
        ({"backbone": {"type": "siglip"}}, "field 'backbone.type'"),
        ({"categories": ["hate", "hate", "x"]}, "duplicates"),
        ({"thresholds": {"nudity": 0.5}}, "not in categories"),
        ({"head_weights": "missing.safetensors"}, "missing missing.safetensors"),
        ({"extra_field": 1}, "field 'extra_field'"),
    ],
)
def test_mismatches_are_refused(
    checkpoint: Path, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_model(edit_config(checkpoint, tmp_path, **changes))


def test_backbone_dims_must_match(tmp_path: Path, tiny_clip_dir: Path) -> None:  # noqa: F811
    """A head built for 8-d image embeddings cannot run on a backbone producing 16."""
    head = HeadConfig(hidden_dim=16, projection_dim=4, with_embeddings=False)
    checkpoint = write_checkpoint(tmp_path / "narrow", tiny_clip_dir, head)
    edited = edit_config(checkpoint, tmp_path, image_embedding_dim=8)
    from safetensors.torch import load_file, save_file

    state = load_file(str(edited / "head.safetensors"))
    state["image_mean"], state["image_std"] = torch.zeros(8), torch.ones(8)
    state["image_projection.weight"] = state["image_projection.weight"][:, :8].contiguous()
    save_file(state, str(edited / "head.safetensors"))
    with pytest.raises(ModelLoadError, match=r"field 'image_embedding_dim'.*produces 16"):
        load_model(edited)


def test_weights_file_that_is_not_safetensors_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    copy = edit_config(checkpoint, tmp_path)
    (copy / "head.safetensors").write_bytes(b"\x80\x04pickled")
    with pytest.raises(ModelLoadError, match=r"cannot read .* as safetensors"):
        load_model(copy)
