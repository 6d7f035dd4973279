"""A fusion checkpoint with a frame attention served by the Classifier deployment on the
session's Ray instance (#14): the replica says so in its ModelInfo, returns each row's frame
logit, and the worker's attention pooling of the served response equals in-process scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moderator.config import DecodeLimits
from moderator.ingest import decode_post
from moderator.model import load_model
from moderator.serving.scoring import score_request
from moderator.serving_settings import ServingSettings
from moderator.signals.embeddings import model_embeddings
from tests.integration.served_checkpoint import served_checkpoint
from tests.unit.test_animated_frames import record
from tests.unit.test_frame_attention import attention_checkpoint, video_post
from tests.unit.test_model_backbones import tiny_clip_dir  # noqa: F401
from workers.features import build_request, pool_frames

pytestmark = pytest.mark.integration


def test_replica_serves_frame_logits_and_pools_as_in_process(
    ray_serving: ServingSettings,
    tiny_clip_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    checkpoint = attention_checkpoint(tmp_path / "ckpt", tiny_clip_dir, attention=True)
    with served_checkpoint(ray_serving, checkpoint, "frame-attention-test") as (handle, info):
        model = load_model(checkpoint)
        assert info.frame_attention and info.model_version == model.model_version
        video = video_post("attention")
        still = decode_post(record(caption="just text"), DecodeLimits(), model.image_size)
        posts = [video, still]
        assert len(video.frames) > 2
        request = build_request(posts, None, model_embeddings(model), model.image_size).request
        served = handle.score_batch.remote(request).result(timeout_s=120)
        local = score_request(model, request)
        assert served.frame_logits is not None and local.frame_logits is not None
        assert served.frame_logits.shape == (len(request),)
        np.testing.assert_allclose(served.frame_logits, local.frame_logits, rtol=1e-4, atol=1e-5)
        pooled, worst = pool_frames(posts, served.scores, served.frame_logits)
        expected, _ = pool_frames(posts, local.scores, local.frame_logits)
        np.testing.assert_allclose(pooled, expected, rtol=1e-4, atol=1e-5)
        assert worst[0] is not None and worst[1] is None
        # Attention actually weighs: not the mean or the max of the video's frames.
        rows = [0, *range(2, len(request))]
        assert not np.allclose(pooled[0], local.scores[rows].mean(axis=0), atol=1e-7)
