"""Backbones: one contract every implementation runs (offline real weights, tiny random CLIP and
ALIGN built in code), plus the offline-loading rules for Hugging Face models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from moderator.model.backbone_base import BackboneEncoder, BackboneSpec, ImagePreprocessing
from moderator.model.backbones import load_backbone, parse_backbone
from moderator.model.errors import ModelLoadError
from moderator.model.text_encoder import default_minilm_path

TINY_IMAGE_SIZE = 32
# Tiny text towers reuse MiniLM's offline BERT tokenizer: [CLS] 101, [SEP] 102, [PAD] 0.
TINY_TEXT = {
    "vocab_size": 30522,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 64,
}


def _copy_tokenizer(directory: Path) -> None:
    source = default_minilm_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, directory / name)


def build_tiny_clip(directory: Path) -> Path:
    """A random 2-layer CLIP (16-d projections) saved with save_pretrained, plus a tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={**TINY_TEXT, "bos_token_id": 101, "eos_token_id": 102, "pad_token_id": 0},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": TINY_IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(directory)
    _copy_tokenizer(directory)
    return directory


def build_tiny_align(directory: Path) -> Path:
    """A random ALIGN (BERT text, EfficientNet image) with ALIGN's [-1, 1] pixel scaling."""
    from transformers import AlignConfig, AlignModel

    torch.manual_seed(0)
    config = AlignConfig(
        text_config={**TINY_TEXT, "pad_token_id": 0},
        vision_config={
            "image_size": TINY_IMAGE_SIZE,
            "width_coefficient": 0.1,
            "depth_coefficient": 0.1,
            "hidden_dim": 64,
            "num_hidden_layers": 4,
        },
        projection_dim=16,
    )
    AlignModel(config).save_pretrained(directory)
    _copy_tokenizer(directory)
    preprocessor = {"rescale_factor": 1 / 127.5, "rescale_offset": True, "do_normalize": False}
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return directory


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_align_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_align(tmp_path_factory.mktemp("tiny-align"))


@pytest.fixture(scope="session")
def offline_backbone() -> BackboneEncoder:
    return load_backbone(BackboneSpec(type="offline", id="default"))


def pixels(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


class BackboneContract:
    """What every BackboneEncoder must do; subclasses provide a `backbone` fixture."""

    def test_satisfies_protocol(self, backbone: BackboneEncoder) -> None:
        assert isinstance(backbone, BackboneEncoder)
        assert backbone.image_dim > 0 and backbone.text_dim > 0
        assert backbone.trainable_modules()

    def test_encode_images(self, backbone: BackboneEncoder) -> None:
        size = backbone.preprocessing.image_size
        out = backbone.encode_images(pixels(3, size))
        assert out.shape == (3, backbone.image_dim) and out.dtype == np.float32
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, backbone.encode_images(pixels(3, size)), atol=1e-5)
        assert backbone.encode_images(np.zeros((0, size, size, 3), np.uint8)).shape[0] == 0

    def test_encode_texts_keeps_row_order(self, backbone: BackboneEncoder) -> None:
        texts = ["a much longer caption about a red bicycle in the park", "hi", ""]
        out = backbone.encode_texts(texts)
        assert out.shape == (3, backbone.text_dim) and out.dtype == np.float32
        single = backbone.encode_texts([texts[1]])
        np.testing.assert_allclose(out[1], single[0], atol=1e-4)
        assert backbone.encode_texts([]).shape == (0, backbone.text_dim)

    def test_features_are_differentiable(self, backbone: BackboneEncoder) -> None:
        size = backbone.preprocessing.image_size
        images = backbone.preprocessing.to_tensor(pixels(2, size))
        loss = backbone.image_features(images).sum() + backbone.text_features(["a b"]).sum()
        loss.backward()
        grads = [
            p.grad
            for module in backbone.trainable_modules().values()
            for p in module.parameters()
            if p.grad is not None
        ]
        assert grads and any(g.abs().sum() > 0 for g in grads)
        for module in backbone.trainable_modules().values():
            module.zero_grad(set_to_none=True)

    def test_wrong_pixels_raise_value_error(self, backbone: BackboneEncoder) -> None:
        with pytest.raises(ValueError, match="pixels"):
            backbone.encode_images(np.zeros((1, 5, 5, 3), np.uint8))


class TestOfflineBackbone(BackboneContract):
    @pytest.fixture
    def backbone(self, offline_backbone: BackboneEncoder) -> BackboneEncoder:
        return offline_backbone

    def test_dims_match_the_starter(self, backbone: BackboneEncoder) -> None:
        assert (backbone.image_dim, backbone.text_dim) == (1280, 384)


class TestTinyClip(BackboneContract):
    @pytest.fixture
    def backbone(self, tiny_clip_dir: Path) -> BackboneEncoder:
        return load_backbone(BackboneSpec(type="clip", id=str(tiny_clip_dir)))

    def test_dims_are_the_projection(self, backbone: BackboneEncoder) -> None:
        assert (backbone.image_dim, backbone.text_dim) == (16, 16)
        assert backbone.preprocessing.image_size == TINY_IMAGE_SIZE


class TestTinyAlign(BackboneContract):
    @pytest.fixture
    def backbone(self, tiny_align_dir: Path) -> BackboneEncoder:
        return load_backbone(BackboneSpec(type="align", id=str(tiny_align_dir)))

    def test_preprocessing_comes_from_the_model_dir(self, backbone: BackboneEncoder) -> None:
        pre = backbone.preprocessing
        assert pre.rescale_offset and not pre.normalize
        x = pre.to_tensor(np.full((1, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, 3), 255, np.uint8))
        assert torch.allclose(x, torch.ones_like(x))


def test_missing_hub_model_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = BackboneSpec(type="clip", id="openai/clip-vit-base-patch32", revision="abc123")
    with pytest.raises(ModelLoadError, match=r"hf download openai/clip-vit-base-patch32"):
        load_backbone(spec)


def test_missing_local_directory_is_named() -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_backbone(BackboneSpec(type="align", id="./no/such/model"))


def test_checkpoint_preprocessing_must_match_the_model(tiny_clip_dir: Path) -> None:
    other = ImagePreprocessing(image_size=TINY_IMAGE_SIZE, mean=(0.1, 0.1, 0.1))
    with pytest.raises(ModelLoadError, match="preprocessing"):
        load_backbone(BackboneSpec(type="clip", id=str(tiny_clip_dir)), other)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("offline", BackboneSpec(type="offline", id="default")),
        (
            "clip:openai/clip-vit-base-patch32",
            BackboneSpec(type="clip", id="openai/clip-vit-base-patch32"),
        ),
        ("align:/models/align@v2", BackboneSpec(type="align", id="/models/align", revision="v2")),
    ],
)
def test_parse_backbone(text: str, expected: BackboneSpec) -> None:
    assert parse_backbone(text) == expected


def test_parse_backbone_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="expected 'offline'"):
        parse_backbone("siglip:x")
