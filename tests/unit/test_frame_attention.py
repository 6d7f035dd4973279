"""Trained frame attention pooling (#14): the pooling math, the checkpoint (saved, loaded,
counted in the model version only when present), serving's frame logits, and the worker's
pooling and start-up refusal.

The worker tests use a fake BatchScorer (a ModelInfo and no model behind it) and stand-ins
for the Kafka clients that are never called: the refusal comes before any of them is used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from moderator.config import DecodeLimits, Settings
from moderator.errors import ConfigError
from moderator.frame_pooling import attention_weights, pool_scores
from moderator.ingest import DecodedPost, decode_post
from moderator.media_settings import MediaLimits
from moderator.model import ModelLoadError, load_model
from moderator.model.backbone_base import BackboneSpec
from moderator.model.backbones import load_backbone
from moderator.model.checkpoint_files import ADDED_FIELDS, content_hash, read_config
from moderator.model.frame_attention import (
    FRAME_ATTENTION_FILE,
    FrameAttention,
    FrameAttentionConfig,
    frame_attention_of,
)
from moderator.model.fusion_config import FusionConfig
from moderator.model.fusion_heads import HeadConfig, build_head
from moderator.model.fusion_model import save_fusion_checkpoint
from moderator.policy import load_policy
from moderator.serving.messages import ModelInfo, ScoreRequest, ScoreResponse
from moderator.serving.scoring import merge_requests, model_info, score_request, split_response
from moderator.training.frame_training import RowTensors, pooled_probabilities
from moderator.training.frames import FrameEmbeddings
from moderator.training.trainer import TrainConfig
from tests import hostile_media as media
from tests.unit.test_animated_frames import later_bad_frames, record
from tests.unit.test_model_backbones import TINY_IMAGE_SIZE, tiny_clip_dir  # noqa: F401
from workers.features import check_frame_pooling, pool_frames
from workers.moderation_worker import ModerationWorker

CATEGORIES = ["hate", "harm"]


def test_attention_pooling_is_the_softmax_weighted_sum() -> None:
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.3]], np.float32)
    logits = np.array([0.5, 2.0, -1.0], np.float32)
    weights = np.exp(logits) / np.exp(logits).sum()
    expected = (weights[:, None] * scores).sum(axis=0)
    np.testing.assert_allclose(pool_scores(scores, "attention", logits), expected, rtol=1e-6)
    np.testing.assert_allclose(attention_weights(logits).sum(), 1.0)
    # Equal logits are the mean; one frame keeps its score; a huge logit picks its frame.
    np.testing.assert_allclose(pool_scores(scores, "attention", np.zeros(3)), scores.mean(0))
    np.testing.assert_allclose(pool_scores(scores[:1], "attention", logits[:1]), scores[0])
    picked = pool_scores(scores, "attention", np.array([0.0, 500.0, 0.0]))
    np.testing.assert_allclose(picked, scores[1], atol=1e-6)
    np.testing.assert_allclose(pool_scores(scores, "max"), [0.8, 0.9])
    with pytest.raises(ValueError, match="logits"):
        pool_scores(scores, "attention")


def _attention(dim: int, seed: int = 0) -> FrameAttention:
    torch.manual_seed(seed)
    module = FrameAttention(FrameAttentionConfig(hidden=8), dim)
    torch.nn.init.normal_(module.weight.weight)  # zero at init (mean pooling): make it weigh
    return module.eval()


def test_training_pools_exactly_as_the_worker_does() -> None:
    """pooled_probabilities (torch, training) on a padded table of posts with 3, 1 and 0
    frames equals pool_scores (numpy, worker) on each post's rows."""
    rng = np.random.default_rng(0)
    text = rng.normal(size=(5, 6)).astype(np.float32)
    image = rng.normal(size=(5, 4)).astype(np.float32)
    has_image = np.array([True, True, True, True, False])
    image[~has_image] = 0
    index = np.array([[0, 1, 2], [3, -1, -1], [4, -1, -1]])
    embeddings = FrameEmbeddings(text, image, has_image, index)
    torch.manual_seed(0)
    head = build_head(HeadConfig(hidden_dim=8, projection_dim=3), 6, 4, 2).eval()
    attention = _attention(4)
    rows = RowTensors(embeddings, TrainConfig(), torch.device("cpu"))
    with torch.inference_mode():
        row_scores = torch.sigmoid(head(rows.text, rows.image, rows.has_image)).numpy()
        logits = attention(torch.from_numpy(image)).numpy() * has_image
        for method in ("attention", "max", "mean"):
            pooled = pooled_probabilities(
                head,
                attention,
                rows,
                torch.arange(3),
                method,
            ).numpy()
            for post, slots in enumerate(index):
                own = slots[slots >= 0]
                expected = pool_scores(row_scores[own], method, logits[own])
                np.testing.assert_allclose(pooled[post], expected, rtol=1e-5, atol=1e-6)


def attention_checkpoint(directory: Path, clip_dir: Path, attention: bool) -> Path:
    spec = BackboneSpec(type="clip", id=str(clip_dir))
    backbone = load_backbone(spec)
    torch.manual_seed(0)
    head_config = HeadConfig(hidden_dim=16, projection_dim=4)
    head = build_head(head_config, backbone.text_dim, backbone.image_dim, len(CATEGORIES))
    config = FusionConfig(
        name="tiny-frames",
        categories=CATEGORIES,
        backbone=spec,
        text_embedding_dim=backbone.text_dim,
        image_embedding_dim=backbone.image_dim,
        preprocessing=backbone.preprocessing,
        head=head_config,
        modalities="both",
    )
    module = _attention(backbone.image_dim) if attention else None
    return save_fusion_checkpoint(directory, config, head, frame_attention=module)


@pytest.fixture(scope="module")
def with_attention(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return attention_checkpoint(tmp_path_factory.mktemp("with"), tiny_clip_dir, attention=True)


@pytest.fixture(scope="module")
def without_attention(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return attention_checkpoint(tmp_path_factory.mktemp("without"), tiny_clip_dir, attention=False)


def test_checkpoint_round_trip_and_versions(with_attention: Path, without_attention: Path) -> None:
    saved = json.loads((with_attention / "config.json").read_text())
    assert saved["frame_attention"] == {"hidden": 8}
    assert saved["frame_attention_weights"] == FRAME_ATTENTION_FILE
    model, plain = load_model(with_attention), load_model(without_attention)
    attentive = frame_attention_of(model)
    assert attentive is not None and frame_attention_of(plain) is None
    embeddings = np.random.default_rng(1).normal(size=(3, model.image_embedding_dim))
    with torch.inference_mode():
        expected = _attention(model.image_embedding_dim)(torch.from_numpy(embeddings).float())
    logits = attentive.frame_logits(embeddings.astype(np.float32))
    assert logits.shape == (3,) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-5)
    # The same head with attention is another model version; without, the config hashes as
    # one written before the field existed.
    assert model.model_version != plain.model_version
    config = read_config(FusionConfig, without_attention)
    canonical = {k: v for k, v in config.model_dump(mode="json").items() if k not in ADDED_FIELDS}
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode())
    digest.update((without_attention / config.head_weights).read_bytes())
    assert content_hash(without_attention, config) == digest.hexdigest()


def test_a_config_json_without_the_fields_keeps_its_version(
    without_attention: Path, tmp_path: Path
) -> None:
    old = shutil.copytree(without_attention, tmp_path / "old")
    raw = json.loads((old / "config.json").read_text())
    for field in ("frame_attention", "frame_attention_weights"):
        del raw[field]
    (old / "config.json").write_text(json.dumps(raw))
    assert load_model(old).model_version == load_model(without_attention).model_version


def test_attention_weights_that_do_not_fit_are_refused(
    with_attention: Path, tmp_path: Path
) -> None:
    broken = shutil.copytree(with_attention, tmp_path / "broken")
    raw = json.loads((broken / "config.json").read_text())
    raw["frame_attention"] = {"hidden": 9}
    (broken / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match=r"frame_attention\.safetensors.*does not fit"):
        load_model(broken)
    raw["frame_attention_weights"] = None
    (broken / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="frame_attention and frame_attention_weights"):
        load_model(broken)


def test_serving_returns_a_logit_per_image_row(
    with_attention: Path, without_attention: Path
) -> None:
    model = load_model(with_attention)
    assert (
        model_info(model).frame_attention
        and not model_info(load_model(without_attention)).frame_attention
    )
    size, dim = model.image_size, model.image_embedding_dim
    pixels = np.random.default_rng(2).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    request = ScoreRequest(
        [0, 1, -1], pixels, np.zeros((0, dim), np.float32), [0, 0, 0], ["look"],
        np.zeros((0, model.text_embedding_dim), np.float32),
    )  # fmt: skip
    response = score_request(model, request)
    attentive = frame_attention_of(model)
    assert attentive is not None and response.frame_logits is not None
    expected = attentive.frame_logits(model.embed_images(pixels))
    np.testing.assert_allclose(response.frame_logits, [*expected, 0.0], rtol=1e-5, atol=1e-6)
    # Merged with another worker's request and split back, each keeps its rows' logits.
    merged, rows = merge_requests([request, request], dim, model.text_embedding_dim)
    parts = split_response(score_request(model, merged), [request, request], rows)
    for part in parts:
        assert part.frame_logits is not None
        np.testing.assert_allclose(part.frame_logits, response.frame_logits, rtol=1e-5, atol=1e-6)
    assert score_request(load_model(without_attention), request).frame_logits is None


def video_post(pooling: str) -> DecodedPost:
    video = base64.b64encode(media.video_of(later_bad_frames(30, 5))).decode()
    limits = DecodeLimits(media=MediaLimits(pooling=pooling))  # type: ignore[arg-type]
    return decode_post(record(video_b64=video, caption="look"), limits, 32)


def test_worker_pools_with_the_logits() -> None:
    post = video_post("attention")
    frames = len(post.frames)
    assert frames > 2
    scores = np.random.default_rng(3).random((frames, 2)).astype(np.float32)
    logits = np.linspace(-1, 2, frames).astype(np.float32)
    pooled, worst = pool_frames([post], scores, logits)
    np.testing.assert_allclose(pooled[0], pool_scores(scores, "attention", logits), rtol=1e-6)
    assert worst[0] is not None and worst[0].index == int(np.argmax(scores) // 2)
    # No logits (a model without attention redeployed under a running worker): max.
    pooled, _ = pool_frames([post], scores, None)
    np.testing.assert_allclose(pooled[0], scores.max(axis=0))


def _info(frame_attention: bool) -> ModelInfo:
    return ModelInfo("m-123", ["hate"], TINY_IMAGE_SIZE, 4, 4, frame_attention=frame_attention)


def test_attention_pooling_needs_a_model_with_frame_attention() -> None:
    attention = MediaLimits(pooling="attention")
    check_frame_pooling(attention, _info(True))
    check_frame_pooling(MediaLimits(), _info(False))
    with pytest.raises(ConfigError, match=r"limits\.media\.pooling.*m-123 has no frame attention"):
        check_frame_pooling(attention, _info(False))


class _FakeScorer:
    """A BatchScorer with a ModelInfo only: the worker must refuse before scoring anything."""

    def info(self) -> ModelInfo:
        return _info(False)

    def score(self, request: ScoreRequest) -> ScoreResponse:
        raise AssertionError("the worker refused to start: nothing is scored")


def test_the_worker_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("name: p\nversion: '1'\ncategories: [hate]\nrules: []\n")
    settings = Settings.model_validate(
        {"limits": {"media": {"pooling": "attention"}}, "redis": {"enabled": False}}
    )
    unused: Any = object()  # Kafka clients: never reached
    with pytest.raises(ConfigError, match=r"limits\.media\.pooling"):
        ModerationWorker(
            settings, unused, unused, _FakeScorer(), load_policy(tmp_path / "p.yaml"), None
        )
