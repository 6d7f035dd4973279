"""Merging worker requests into one forward pass returns each post's own scores.

Uses a tiny deterministic stand-in model behind the ModerationModel interface
(no torch weights, no Ray cluster): scores are a function of the caption and the image.
The replica tests drive the Classifier deployment's class directly in an event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from ray import serve

from moderator.serving import classifier_deployment
from moderator.serving.messages import NO_IMAGE, NO_TEXT, ScoreRequest, ScoreResponse
from moderator.serving.recent import RecentEmbeddings
from moderator.serving.scoring import merge_requests, score_request, split_response
from moderator.serving_settings import ClassifierArgs

DIM = 3
TEXT_DIM = 2


class ArithmeticModel:
    """Image embedding: the pixel mean; text embedding: the caption length. Counts encodes."""

    model_version = "arith-1"
    categories: ClassVar[list[str]] = ["caption_len", "image_mean"]
    image_size = 2
    image_embedding_dim = DIM
    text_embedding_dim = TEXT_DIM

    def __init__(self) -> None:
        self.images_encoded = 0
        self.texts_encoded = 0

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        self.images_encoded += len(pixels)
        means = pixels.reshape(len(pixels), -1).mean(axis=1, dtype=np.float32)
        return np.repeat(means[:, None], DIM, axis=1)

    def embed_texts(self, captions: list[str]) -> np.ndarray:
        self.texts_encoded += len(captions)
        lengths = np.array([len(c) for c in captions], dtype=np.float32)
        return np.repeat(lengths[:, None], TEXT_DIM, axis=1).reshape(-1, TEXT_DIM)

    def score(
        self, text: np.ndarray, has_text: np.ndarray, image: np.ndarray, has_image: np.ndarray
    ) -> np.ndarray:
        return np.stack(
            [np.where(has_text, text[:, 0], -1.0), np.where(has_image, image[:, 0], -1.0)],
            axis=1,
        )


def _request(
    index: list[int],
    pixel_values: list[int],
    cached_values: list[float],
    caption_index: list[int],
    texts: list[str],
    cached_lengths: list[float],
) -> ScoreRequest:
    return ScoreRequest(
        image_index=index,
        pixels=np.array(
            [np.full((2, 2, 3), v, np.uint8) for v in pixel_values], dtype=np.uint8
        ).reshape(-1, 2, 2, 3),
        cached_image_embeddings=np.array(
            [[v] * DIM for v in cached_values], dtype=np.float32
        ).reshape(-1, DIM),
        caption_index=caption_index,
        texts=texts,
        cached_text_embeddings=np.array(
            [[v] * TEXT_DIM for v in cached_lengths], dtype=np.float32
        ).reshape(-1, TEXT_DIM),
    )


def test_merged_scores_equal_scoring_each_request_alone() -> None:
    model = ArithmeticModel()
    requests = [
        # encoded and cached images and captions, a row without an image, a shared caption
        _request([0, NO_IMAGE, 1, 2], [10, 20], [30.0], [0, 2, 1, 0], ["a", "bb"], [7.0]),
        # everything cached
        _request([0], [], [40.0], [0], [], [9.0]),
        # nothing cached, a row without a caption
        _request([NO_IMAGE, 0], [50], [], [NO_TEXT, 0], ["ffff"], []),
        # only cached captions, no images at all
        _request([NO_IMAGE, NO_IMAGE], [], [], [1, 0], [], [3.0, 5.0]),
    ]
    merged, rows = merge_requests(requests, DIM, TEXT_DIM)
    assert rows == [4, 1, 2, 2]
    parts = split_response(score_request(model, merged), requests, rows)
    for request, part in zip(requests, parts, strict=True):
        alone = score_request(model, request)
        np.testing.assert_array_equal(part.scores, alone.scores)
        np.testing.assert_array_equal(part.new_image_embeddings, alone.new_image_embeddings)
        np.testing.assert_array_equal(part.new_text_embeddings, alone.new_text_embeddings)
    np.testing.assert_array_equal(
        parts[0].scores, [[1.0, 10.0], [7.0, -1.0], [2.0, 20.0], [1.0, 30.0]]
    )
    np.testing.assert_array_equal(parts[2].scores, [[-1.0, -1.0], [4.0, 50.0]])
    np.testing.assert_array_equal(parts[3].scores, [[5.0, -1.0], [3.0, -1.0]])


def test_cached_captions_and_images_are_not_encoded() -> None:
    model = ArithmeticModel()
    response = score_request(model, _request([0, 0], [], [1.0], [0, 1], [], [2.0, 6.0]))
    assert (model.images_encoded, model.texts_encoded) == (0, 0)
    assert response.new_text_embeddings.shape == (0, TEXT_DIM)
    np.testing.assert_array_equal(response.scores, [[2.0, 1.0], [6.0, 1.0]])


def test_rows_must_agree() -> None:
    with pytest.raises(ValueError, match="caption_index"):
        _request([NO_IMAGE], [], [], [NO_TEXT, NO_TEXT], [], [])


def test_max_ongoing_requests_must_cover_the_batch() -> None:
    with pytest.raises(ValidationError, match="silently caps"):
        ClassifierArgs(max_ongoing_requests=2, batching={"max_batch_size": 4})  # type: ignore[arg-type]


def _keyed(pixel_values: list[int], texts: list[str]) -> ScoreRequest:
    rows = max(len(pixel_values), len(texts))
    request = _request(
        [i if i < len(pixel_values) else NO_IMAGE for i in range(rows)],
        pixel_values,
        [],
        [i if i < len(texts) else NO_TEXT for i in range(rows)],
        texts,
        [],
    )
    request.image_keys = [f"sha-{v}" for v in pixel_values]
    return request


def test_replica_reuses_embeddings_of_in_flight_reposts() -> None:
    """A repost whose original is still in flight (not yet in Redis) is not encoded again."""
    model = ArithmeticModel()
    recent = RecentEmbeddings(capacity=8)
    first = score_request(model, _keyed([10, 20], ["a", "bb"]), recent)
    assert (model.images_encoded, model.texts_encoded) == (2, 2)
    # The next batch repeats one image and one caption, and repeats a new one within itself.
    requests = [_keyed([20, 30], ["bb", "ccc"]), _keyed([30], ["ccc"])]
    merged, rows = merge_requests(requests, DIM, TEXT_DIM)
    assert merged.image_keys == ["sha-20", "sha-30", "sha-30"]
    parts = split_response(score_request(model, merged, recent), requests, rows)
    assert (model.images_encoded, model.texts_encoded) == (3, 3)
    assert recent.reused == 4
    fresh = ArithmeticModel()
    for request, part in zip(requests, parts, strict=True):
        alone = score_request(fresh, request)  # no memory: encodes everything
        np.testing.assert_array_equal(part.scores, alone.scores)
        np.testing.assert_array_equal(part.new_image_embeddings, alone.new_image_embeddings)
        np.testing.assert_array_equal(part.new_text_embeddings, alone.new_text_embeddings)
    np.testing.assert_array_equal(first.new_image_embeddings[1], parts[0].new_image_embeddings[0])


def test_replica_memory_is_bounded_and_optional() -> None:
    model = ArithmeticModel()
    recent = RecentEmbeddings(capacity=2)
    for value in (1, 2, 3):
        score_request(model, _keyed([value], []), recent)
    score_request(model, _keyed([1], []), recent)  # evicted (least recent): encoded again
    assert model.images_encoded == 4
    score_request(model, _keyed([3], []), recent)
    assert model.images_encoded == 4
    unkeyed = _request([0], [3], [], [NO_TEXT], [], [])
    score_request(model, unkeyed, recent)  # no keys: nothing to look up, encoded
    assert model.images_encoded == 5
    off = RecentEmbeddings(capacity=0)
    score_request(model, _keyed([3, 3], []), off)  # still deduplicated within the batch
    score_request(model, _keyed([3], []), off)
    assert model.images_encoded == 7


def test_replica_memory_is_bounded_in_bytes() -> None:
    """Grid features are ~50x a pooled vector: the byte bound holds before the entry count."""
    model = ArithmeticModel()
    entry = DIM * 4  # one float32 image embedding
    recent = RecentEmbeddings(capacity=100, max_bytes=2 * entry)
    for value in (1, 2, 3):
        score_request(model, _keyed([value], []), recent)
    assert recent.bytes == 2 * entry
    score_request(model, _keyed([1], []), recent)  # evicted by bytes: encoded again
    assert model.images_encoded == 4
    score_request(model, _keyed([3], []), recent)
    assert model.images_encoded == 4
    tiny = RecentEmbeddings(capacity=100, max_bytes=entry - 1)  # no entry fits: none kept
    score_request(model, _keyed([5], []), tiny)
    score_request(model, _keyed([5], []), tiny)
    assert model.images_encoded == 6 and tiny.bytes == 0


class SlowModel(ArithmeticModel):
    """ArithmeticModel whose image encoder takes 0.2 s: a forward pass long enough to watch.

    Records each forward pass: images encoded, thread, torch threads, start and end.
    """

    def __init__(self) -> None:
        super().__init__()
        self.forwards: list[int] = []
        self.threads: set[str] = set()
        self.torch_threads: set[int] = set()
        self.windows: list[tuple[float, float]] = []

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        started = time.monotonic()
        self.forwards.append(len(pixels))
        self.threads.add(threading.current_thread().name)
        self.torch_threads.add(torch.get_num_threads())
        time.sleep(0.2)
        self.windows.append((started, time.monotonic()))
        return super().embed_images(pixels)


@pytest.fixture()
def slow_replica(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], SlowModel]]:
    """A Classifier replica object around a SlowModel, outside Ray: @serve.batch only asks
    the replica context for max_ongoing_requests, so that is all the fake context holds."""
    model = SlowModel()
    monkeypatch.setattr(classifier_deployment, "load_replica_model", lambda args: model)
    context = SimpleNamespace(_deployment_config=SimpleNamespace(max_ongoing_requests=8))
    monkeypatch.setattr(serve, "get_replica_context", lambda: context)
    # @serve.batch keeps one queue per decorated method, bound to the event loop that first
    # used it (a replica has one loop for its life): each test's loop gets a fresh one, and
    # the batching the test sets is undone afterwards.
    lazy_queue = classifier_deployment.ClassifierDeployment.func_or_class._score_merged
    lazy_queue = lazy_queue.set_max_batch_size.__self__
    for name in ("_queue", "max_batch_size", "batch_wait_timeout_s"):
        monkeypatch.setattr(
            lazy_queue, name, None if name == "_queue" else getattr(lazy_queue, name)
        )
    threads = torch.get_num_threads()  # the compute thread's setting is process-wide
    yield lambda: model
    torch.set_num_threads(threads)


def _run_replica(
    scenario: Callable[[classifier_deployment.ClassifierDeployment], Awaitable[object]],
    batch_wait_timeout_s: float = 0.05,
) -> list[float]:
    """Run scenario on a fresh replica in a new event loop; returns the loop's ticks."""
    args = ClassifierArgs(torch_threads=1)
    replica = classifier_deployment.ClassifierDeployment.func_or_class(args)
    # By default a long batch wait: merging must not depend on callers arriving within 2 ms.
    replica.reconfigure({"max_batch_size": 8, "batch_wait_timeout_s": batch_wait_timeout_s})
    ticks: list[float] = []

    async def main() -> None:
        done = asyncio.Event()

        async def tick() -> None:
            while not done.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        await scenario(replica)
        done.set()
        await ticker

    asyncio.run(main())
    return ticks


def _assert_scores_alone(requests: list[ScoreRequest], responses: list[ScoreResponse]) -> None:
    for request, response in zip(requests, responses, strict=True):
        alone = score_request(ArithmeticModel(), request)
        np.testing.assert_array_equal(response.scores, alone.scores)
        np.testing.assert_array_equal(response.new_image_embeddings, alone.new_image_embeddings)


def test_replica_merges_concurrent_callers_on_its_compute_thread(
    slow_replica: Callable[[], SlowModel],
) -> None:
    """Four callers at once: one forward pass, off the event loop, which keeps ticking."""
    requests = [_keyed([v], [f"caption {v}"]) for v in (1, 2, 3, 4)]
    responses: list[ScoreResponse] = []

    async def scenario(replica: classifier_deployment.ClassifierDeployment) -> None:
        responses.extend(await asyncio.gather(*(replica.score_batch(r) for r in requests)))

    ticks = _run_replica(scenario)
    model = slow_replica()
    assert model.forwards == [4]  # one merged forward pass
    (thread,) = model.threads
    assert thread.startswith("classifier-compute") and thread != threading.main_thread().name
    assert model.torch_threads == {1}  # ClassifierArgs.torch_threads, on the compute thread
    (start, end) = model.windows[0]
    assert len([t for t in ticks if start < t < end]) >= 2, "the event loop was blocked"
    _assert_scores_alone(requests, responses)


def test_callers_arriving_during_a_forward_pass_merge_into_the_next(
    slow_replica: Callable[[], SlowModel],
) -> None:
    """While the first caller's forward pass runs, three more arrive: the replica receives
    them meanwhile and scores them together in the next forward pass."""
    first, *late = [_keyed([v], [f"caption {v}"]) for v in (1, 2, 3, 4)]
    responses: list[ScoreResponse] = []
    arrived: list[float] = []

    async def scenario(replica: classifier_deployment.ClassifierDeployment) -> None:
        first_call = asyncio.create_task(replica.score_batch(first))
        await asyncio.sleep(0.08)  # within the first forward pass (0.05 s wait + 0.2 s)
        arrived.append(time.monotonic())
        rest = await asyncio.gather(*(replica.score_batch(r) for r in late))
        responses.extend([await first_call, *rest])

    ticks = _run_replica(scenario)
    model = slow_replica()
    assert model.forwards == [1, 3]
    (start, end), _ = model.windows
    assert start < arrived[0] < end, "the late callers did not arrive during the first pass"
    assert len([t for t in ticks if start < t < end]) >= 2, "the event loop was blocked"
    _assert_scores_alone([first, *late], responses)


def test_callers_trickling_in_during_a_forward_pass_share_the_next(
    slow_replica: Callable[[], SlowModel],
) -> None:
    """Three callers arrive 30 ms apart during a forward pass, with the default 2 ms batch
    wait: @serve.batch closes a batch for each, and the merger still computes them in one
    pass (without it: four passes, [1, 1, 1, 1], each paying the whole per-pass cost)."""
    first, *late = [_keyed([v], [f"caption {v}"]) for v in (1, 2, 3, 4)]
    responses: list[ScoreResponse] = []

    async def scenario(replica: classifier_deployment.ClassifierDeployment) -> None:
        first_call = asyncio.create_task(replica.score_batch(first))
        calls = []
        for request in late:
            await asyncio.sleep(0.03)
            calls.append(asyncio.create_task(replica.score_batch(request)))
        responses.extend([await first_call, *await asyncio.gather(*calls)])

    _run_replica(scenario, batch_wait_timeout_s=0.002)
    assert slow_replica().forwards == [1, 3]
    _assert_scores_alone([first, *late], responses)
