"""image_url posts through a real worker on the real broker: fetched, or decided with the
fetch problem listed.

The image host is a real HTTP server on 127.0.0.1, exempted through
limits.image_urls.allowed_networks as an operator would exempt an internal image store;
the metadata address and unlisted hosts stay refused.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import numpy as np
import orjson
import pytest
from PIL import Image

from moderator.config import ImageUrlSettings, Settings
from moderator.demo.collect import collect
from moderator.io import create_producer
from moderator.local.stack import create_topics
from moderator.serving import ScoreRequest, ScoreResponse
from tests.image_server import Server, send, serve, trickle
from tests.integration.test_worker_delivery import KeywordScorer, _start_worker, committed_offsets

pytestmark = pytest.mark.integration


class PixelCountingScorer(KeywordScorer):
    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def score(self, request: ScoreRequest) -> ScoreResponse:
        self.images += len(request.pixels)
        return super().score(request)


@pytest.fixture
def image_host() -> Iterator[Server]:
    yield from serve()


def _jpeg(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), shade, dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_url_posts_are_fetched_or_decided_with_the_fetch_problem(
    isolated_settings: Settings, image_host: Server
) -> None:
    base = f"http://127.0.0.1:{image_host.port}"
    for shade in range(3):
        image_host.routes[f"/img/{shade}.jpg"] = send(200, _jpeg(shade * 80))
    image_host.routes["/slow.jpg"] = trickle
    image_urls = ImageUrlSettings(
        enabled=True,
        allowed_hosts=["127.0.0.1", "169.254.169.254", "10.0.0.1"],
        allowed_schemes=["http"],
        allowed_networks=["127.0.0.1/32"],  # type: ignore[list-item]
        timeout_s=1.0,
    )
    settings = isolated_settings.model_copy(
        update={"limits": isolated_settings.limits.model_copy(update={"image_urls": image_urls})}
    )
    create_topics(settings)
    urls = {
        **{f"good-{shade}": (f"{base}/img/{shade}.jpg", None) for shade in range(3)},
        "metadata": ("http://169.254.169.254/latest/meta-data/", "image_url_private_address"),
        "private": ("http://10.0.0.1/a.jpg", "image_url_private_address"),
        "unlisted": ("http://images.example.com/a.jpg", "image_url_not_allowed"),
        "missing": (f"{base}/missing.jpg", "image_fetch_failed"),
        "slow": (f"{base}/slow.jpg", "image_fetch_failed"),
    }
    tag = uuid.uuid4().hex[:6]
    producer = create_producer(settings.kafka)
    futures = []
    for name, (url, _) in urls.items():
        post = {
            "post_id": f"{name}-{tag}",
            "author_id": "author-1",
            "created_at": "2026-11-22T10:00:00Z",
            "caption": f"a post about {name}",
            "image_url": url,
        }
        futures.append(
            producer.send(
                settings.kafka.posts_topic, key=post["post_id"].encode(), value=orjson.dumps(post)
            )
        )
    producer.flush()
    producer.close()
    ends: dict = {}
    for future in futures:
        meta = future.get(timeout=10)
        ends[(meta.topic, meta.partition)] = max(
            ends.get((meta.topic, meta.partition), 0), meta.offset + 1
        )

    scorer = PixelCountingScorer()
    _, thread, stop, errors = _start_worker(settings, scorer)
    # Posts whose image could not be fetched are decided from their caption, the reason listed.
    expected = {f"{n}-{tag}": [reason] if reason else [] for n, (_, reason) in urls.items()}
    collected = collect(settings.kafka, len(expected), 0, timeout_s=120)
    stop.set()
    thread.join(timeout=60)
    assert not errors

    assert {post_id: d["problems"] for post_id, d in collected.decisions.items()} == expected
    assert scorer.images == 3  # the fetched pixels reached the model
    assert not collected.dead_letters
    unfetched = [d for d in collected.decisions.values() if d["problems"]]
    assert all(d["action"] == "review" for d in unfetched)  # the default policy's problem rule
    paths = {path for path, _ in image_host.requests}
    assert {"/img/0.jpg", "/img/1.jpg", "/img/2.jpg", "/missing.jpg", "/slow.jpg"} == paths
    committed = {
        (tp.topic, tp.partition): offset for tp, offset in committed_offsets(settings).items()
    }
    assert committed == ends
