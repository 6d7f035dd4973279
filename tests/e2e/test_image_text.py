"""A meme-like post is decided by the text inside its image, on real parts: Tansu broker,
redis-server, Ray Serve with the starter, PP-OCR in the worker process (`python -m workers`)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import orjson
import pytest

from moderator.config import Settings
from moderator.demo.collect import collect
from moderator.demo.memes import render_meme
from moderator.io import create_producer
from moderator.local.stack import WorkerProcess, create_topics
from moderator.schema import Decision
from moderator.serving_settings import ServingSettings

pytestmark = pytest.mark.e2e


def _meme_post(post_id: str, image_text: str, seed: int) -> bytes:
    image = render_meme(image_text, np.random.default_rng(seed), layout="plain", distort=False)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return _post(post_id, buffer.getvalue())


def _post(post_id: str, image: bytes) -> bytes:
    return orjson.dumps(
        {
            "post_id": post_id,
            "author_id": f"author-{post_id}",
            "created_at": "2026-11-30T12:00:00Z",
            "caption": "look at this",  # neutral: the message is only in the pixels
            "image_b64": base64.b64encode(image).decode(),
        }
    )


def test_a_threat_in_the_pixels_is_read_reviewed_and_cached(
    isolated_settings: Settings, ray_serving: ServingSettings, tmp_path: Path
) -> None:
    settings = isolated_settings.model_copy(update={"serving": ray_serving})
    create_topics(settings)
    threat = _meme_post("meme-threat", "i will kill you tomorrow", seed=1)
    benign = _meme_post("meme-benign", "monday morning coffee again", seed=2)
    image_b64 = orjson.loads(threat)["image_b64"]
    repost = _post("meme-repost", base64.b64decode(image_b64))  # same image, new post
    producer = create_producer(settings.kafka)
    for key, value in (("meme-threat", threat), ("meme-benign", benign)):
        producer.send(settings.kafka.posts_topic, key=key.encode(), value=value)
    producer.flush()

    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        first = collect(settings.kafka, 2, 0, timeout_s=420, still_running=worker.alive)
        # Sent once the first copy was decided, so its OCR output is in Redis by then.
        producer.send(settings.kafka.posts_topic, key=b"meme-repost", value=repost)
        producer.flush()
        producer.close()
        every = collect(settings.kafka, 3, 0, timeout_s=240, still_running=worker.alive)
    finally:
        exit_code = worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert exit_code == 0, log[-3000:]
    assert set(first.decisions) == {"meme-threat", "meme-benign"}, log[-3000:]

    decisions = {k: Decision.model_validate(v) for k, v in every.decisions.items()}
    threat_decision = decisions["meme-threat"]
    assert "kill you" in threat_decision.image_text.lower()
    assert "violence.threat_terms_in_image" in threat_decision.rules_fired
    assert threat_decision.action == "review"
    assert threat_decision.signals["ocr"]["lines"] >= 1
    assert "ocr" not in threat_decision.cache_hits

    benign_decision = decisions["meme-benign"]
    assert "coffee" in benign_decision.image_text.lower()
    assert "violence.threat_terms_in_image" not in benign_decision.rules_fired

    reposted = decisions["meme-repost"]
    assert "ocr" in reposted.cache_hits  # the repost never ran OCR again
    assert reposted.image_text == threat_decision.image_text
    assert reposted.action == "review"
