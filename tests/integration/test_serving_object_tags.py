"""A fusion checkpoint trained with object tags served by the Classifier deployment on the
session's Ray instance: the replica says so in its ModelInfo, the worker then keys each caption
by its image too, and the replica reads each caption with its image's tags, as in-process."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from moderator.ingest import DecodedPost
from moderator.model import load_model
from moderator.model.backbone_base import BackboneSpec
from moderator.model.backbones import load_backbone
from moderator.model.fusion_config import FusionConfig
from moderator.model.fusion_heads import HeadConfig, build_head
from moderator.model.fusion_model import save_fusion_checkpoint
from moderator.schema import Post
from moderator.serving.scoring import score_request
from moderator.serving_settings import ServingSettings
from moderator.signals.embeddings import embedding_signals
from tests.integration.served_checkpoint import served_checkpoint
from workers.features import build_request

pytestmark = pytest.mark.integration

IMAGE_SIZE = 64


def tagged_checkpoint(directory: Path) -> Path:
    """The offline backbone at 64 px, a random cross head, 3 object tags."""
    spec = BackboneSpec(type="offline", id="default")
    backbone = load_backbone(spec)
    torch.manual_seed(0)
    head_config = HeadConfig(hidden_dim=16, projection_dim=4)
    head = build_head(head_config, backbone.text_dim, backbone.image_dim, 1)
    config = FusionConfig(
        name="tagged",
        categories=["harmful"],
        backbone=spec,
        text_embedding_dim=backbone.text_dim,
        image_embedding_dim=backbone.image_dim,
        preprocessing=backbone.preprocessing.model_copy(update={"image_size": IMAGE_SIZE}),
        head=head_config,
        modalities="both",
        object_tags=3,
    )
    return save_fusion_checkpoint(directory, config, head)


def _post(post_id: str, caption: str, colour: int | None) -> DecodedPost:
    post = Post(post_id=post_id, author_id="a", created_at=datetime.now(UTC), caption=caption)
    if colour is None:
        return DecodedPost(post=post, pixels=None, image_sha256=None)
    pixels = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    pixels[16:48, 16:48, colour] = 255  # a red, green or blue square on black
    return DecodedPost(post=post, pixels=pixels, image_sha256=f"{colour}" * 64)


def test_replica_tags_captions_by_their_image(ray_serving: ServingSettings, tmp_path: Path) -> None:
    checkpoint = tagged_checkpoint(tmp_path / "ckpt")
    with served_checkpoint(ray_serving, checkpoint, "object-tags-test") as (handle, info):
        model = load_model(checkpoint)
        assert info.object_tags and info.model_version == model.model_version
        posts = [
            _post("red", "look at this", 0),
            _post("blue", "look at this", 2),
            _post("red-again", "look at this", 0),
            _post("no-image", "look at this", None),
        ]
        signals = embedding_signals(
            info.model_version,
            info.image_embedding_dim,
            info.text_embedding_dim,
            info.reads_image_text,
            object_tags=info.object_tags,
        )
        request = build_request(posts, None, signals, info.image_size).request
        # One caption, three texts: under the red square, under the blue one, and alone.
        assert request.texts == ["look at this"] * 3
        assert request.caption_index == [0, 1, 0, 2]
        served = handle.score_batch.remote(request).result(timeout_s=120)
        local = score_request(model, request)
        np.testing.assert_allclose(served.scores, local.scores, atol=1e-5)
        np.testing.assert_allclose(served.new_text_embeddings, local.new_text_embeddings, atol=1e-5)
        vectors = served.new_text_embeddings
        assert not np.allclose(vectors[0], vectors[2])  # tagged vs the caption alone
        np.testing.assert_allclose(vectors[2], model.embed_texts(["look at this"])[0], atol=1e-5)
