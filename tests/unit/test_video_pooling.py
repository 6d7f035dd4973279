"""The worker side of multi-frame posts (#14): every frame is an image row of the same
request, keyed by its digest; frame scores are pooled back to one post (max or mean), the
record carries the worst frame, and policies read post.frames and post.worst_frame."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import orjson
import pytest

from moderator.config import DecodeLimits
from moderator.ingest import DecodedPost, decode_post
from moderator.media_settings import MediaLimits
from moderator.model import load_model
from moderator.model.base import ModerationModel
from moderator.policy import PolicyService, load_policy
from moderator.policy.inputs import PolicyInput
from moderator.schema import Action, Decision
from moderator.serving import ScoreResponse
from moderator.serving.messages import NO_IMAGE
from moderator.serving.scoring import score_request
from moderator.signals.embeddings import embedding_signals, model_embeddings
from tests import hostile_media as media
from tests.unit.test_animated_frames import later_bad_frames, record
from tests.unit.test_worker_decisions import _record
from workers.decisions import ValidPost, make_decisions
from workers.features import build_request, frame_rows, pool_frames

EMBEDDINGS = embedding_signals("m1", 4, 4, False)


def _video_post(post_id: str, pooling: str = "max") -> DecodedPost:
    limits = DecodeLimits(media=MediaLimits(pooling=pooling))  # type: ignore[arg-type]
    video = base64.b64encode(media.video_of(later_bad_frames(30, 5))).decode()
    value = orjson.loads(record(video_b64=video, caption="look"))
    value["post_id"] = post_id
    return decode_post(orjson.dumps(value), limits, 224)


def _text_post(post_id: str) -> DecodedPost:
    value = orjson.loads(record(caption="plain"))
    value["post_id"] = post_id
    return decode_post(orjson.dumps(value), DecodeLimits(), 224)


def test_frames_are_rows_after_the_posts_keyed_by_digest() -> None:
    posts = [_video_post("v"), _text_post("t")]
    frames = len(posts[0].frames)
    built = build_request(posts, None, EMBEDDINGS, 224)
    request = built.request
    assert len(request) == 2 + frames - 1  # rows 0..1 are the posts, then frames 1..
    assert frame_rows(posts) == [(0, f) for f in range(1, frames)]
    assert request.image_index[1] == NO_IMAGE
    assert request.pixels.shape[0] == frames  # every frame encoded once, none cached
    assert built.image_hashes == [frame.digest for frame in posts[0].frames]
    assert set(request.caption_index[2:]) == {request.caption_index[0]}
    assert len(built.cache_hits) == 2  # per post, not per row


def test_pooling_max_and_mean_and_the_worst_frame() -> None:
    posts = [_video_post("v"), _text_post("t")]
    rows = 2 + len(posts[0].frames) - 1
    scores = np.zeros((rows, 2), np.float32)
    scores[1] = [0.3, 0.1]  # the text post's own row
    scores[3] = [0.2, 0.9]  # frame 2 of the video (rows 2.. are its frames 1..)
    pooled, worst = pool_frames(posts, scores)
    assert pooled.shape == (2, 2)
    assert pooled[0].tolist() == pytest.approx([0.2, 0.9])
    assert pooled[1].tolist() == pytest.approx([0.3, 0.1])
    assert worst[1] is None and worst[0] is not None and worst[0].index == 2

    mean_posts = [_video_post("v", "mean"), posts[1]]
    pooled, _ = pool_frames(mean_posts, scores)
    frames = len(mean_posts[0].frames)
    assert pooled[0].tolist() == pytest.approx([0.2 / frames, 0.9 / frames])


def test_records_carry_the_worst_frame_and_policies_read_frames(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: p\nversion: '1'\ncategories: [hate, spam]\n"
        "rules:\n- {id: later, when: 'post.frames > 2 && post.worst_frame == 2', "
        "action: review}\n"
    )
    service = PolicyService(load_policy(tmp_path / "p.yaml"))
    posts = [_video_post("v"), _text_post("t")]
    rows = 2 + len(posts[0].frames) - 1
    scores = np.zeros((rows, 2), np.float32)
    scores[3] = [0.2, 0.9]
    response = ScoreResponse(
        "m1",
        ["hate", "spam"],
        scores,
        new_image_embeddings=np.zeros((0, 4), np.float32),
        new_text_embeddings=np.zeros((0, 4), np.float32),
        image_encode_ms=1.0,
        text_encode_ms=0.5,
        score_ms=2.0,
    )
    valid = [ValidPost(_record(i), post) for i, post in enumerate(posts)]
    decisions = make_decisions(valid, response, [[], []], service, {})
    for record_ in decisions:
        assert list(record_) == list(Decision.model_fields)
        Decision.model_validate_json(orjson.dumps(record_))
    video, text = (Decision.model_validate(d) for d in decisions)
    assert video.worst_frame is not None and text.worst_frame is None
    assert video.worst_frame.index == 2 and video.worst_frame.source == "video"
    assert video.worst_frame.scores == {"hate": pytest.approx(0.2), "spam": pytest.approx(0.9)}
    assert video.scores["spam"] == pytest.approx(0.9)
    assert "media" not in video.signals and "frame_hashes" not in video.signals
    assert (video.action, text.action) == (Action.REVIEW, Action.ALLOW)


def test_policies_count_one_video_frame_and_no_frames() -> None:
    video = base64.b64encode(media.video(frames=1)).decode()
    one = decode_post(record(video_b64=video), DecodeLimits(), 224)
    assert one.frames == () and one.pixels is not None
    none = _text_post("t")
    inputs = []
    for decoded in (one, none):
        inputs.append(PolicyInput.from_post(decoded.post, {}, signals=decoded.signals))
    assert [(i.frames, i.worst_frame) for i in inputs] == [(1, 0), (0, -1)]


def test_frames_go_through_the_real_encoder_in_one_batch() -> None:
    """The starter model scores a built request as a replica does (score_request, no Ray):
    one image-encoder call for every frame of the video and the other post's image, and
    each frame row scores as that frame alone would."""
    model = load_model(None)
    assert model.image_size == 224  # as _video_post decodes
    still = decode_post(
        record(image_b64=base64.b64encode(media.png(64)).decode(), caption="look"),
        DecodeLimits(),
        model.image_size,
    )
    posts = [_video_post("v"), still]
    built = build_request(posts, None, model_embeddings(model), model.image_size)
    calls: list[int] = []
    real = model.embed_images

    def counted(pixels: np.ndarray) -> np.ndarray:
        calls.append(len(pixels))
        return real(pixels)

    model.embed_images = counted  # type: ignore[method-assign]
    response = score_request(model, built.request)
    frames = len(posts[0].frames)
    assert calls == [frames + 1]  # every frame and the still image: one forward batch
    assert response.scores.shape == (2 + frames - 1, len(model.categories))
    pooled, worst = pool_frames(posts, response.scores)
    assert worst[0] is not None and worst[1] is None
    np.testing.assert_allclose(pooled[0], response.scores[[0, *range(2, 1 + frames)]].max(0))
    alone = built_alone(model, posts[0].frames[worst[0].index].pixels)
    np.testing.assert_allclose(worst[0].scores, alone, atol=1e-5)


def built_alone(model: ModerationModel, pixels: np.ndarray) -> np.ndarray:
    post = decode_post(record(caption="look"), DecodeLimits(), model.image_size)
    single = DecodedPost(post.post, pixels, "frame", post.text)
    request = build_request([single], None, model_embeddings(model), model.image_size).request
    return score_request(model, request).scores[0]
