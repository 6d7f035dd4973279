"""workers.signal_stage with a counting fake signal and a dict-backed fake of SignalCache's
interface (the real cache is exercised against redis-server in tests/e2e/test_image_text.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from moderator.errors import ReasonCode
from moderator.ingest import DecodedPost
from moderator.schema.post import Post
from moderator.signals import Signal, SignalOutput, SignalSubject
from moderator.signals.base import FieldType
from workers.signal_stage import SignalStage


class CountingSignal(Signal):
    name: ClassVar[str] = "ocr"  # so truncation adds ocr_truncated, as for the real OCR
    version: ClassVar[str] = "t"
    needs = frozenset({"pixels"})
    runs_in = "pool"
    cost = "heavy"
    fields: ClassVar[Mapping[str, FieldType]] = {"text": "string", "truncated": "bool"}
    empty: ClassVar[SignalOutput] = {"text": "", "truncated": False}

    def __init__(self) -> None:
        self.calls = 0

    def compute(self, subject: SignalSubject) -> SignalOutput:
        self.calls += 1
        assert subject.image_sha256 is not None
        if subject.image_sha256.startswith("bad"):
            raise RuntimeError("hostile image")
        return {"text": subject.image_sha256, "truncated": subject.image_sha256.startswith("cut")}


class DictCache:
    def __init__(self) -> None:
        self.store: dict[str, SignalOutput] = {}

    def get_many(self, signal: Signal, keys: Sequence[str]) -> dict[str, SignalOutput]:
        return {key: self.store[key] for key in keys if key in self.store}

    def put_many(self, outputs: Mapping[str, SignalOutput]) -> None:
        self.store.update(outputs)


def _post(digest: str | None) -> DecodedPost:
    post = Post.model_validate(
        {"post_id": "p", "author_id": "a", "created_at": "2026-11-30T00:00:00Z"}
    )
    pixels = np.zeros((8, 8, 3), np.uint8) if digest else None
    return DecodedPost(post, pixels, digest)


def _stage(signal: CountingSignal, cache: Any) -> SignalStage:
    return SignalStage([signal], cache, threads=2)


def test_each_image_is_read_once_per_batch_and_reposts_come_from_the_cache() -> None:
    signal, cache = CountingSignal(), DictCache()
    stage = _stage(signal, cache)
    first = [_post("a" * 64), _post("a" * 64), _post("b" * 64), _post(None)]
    report = stage.run(first)
    assert signal.calls == 2 and report.computed == {"ocr": 2}
    assert [p.signals["ocr"]["text"] for p in first] == ["a" * 64, "a" * 64, "b" * 64, ""]
    again = [_post("a" * 64)]
    report = stage.run(again)
    assert signal.calls == 2 and report.hits == {0: ["ocr"]}
    assert again[0].image_text == "a" * 64
    stage.close()


def test_a_failing_signal_costs_the_post_nothing_but_its_outputs() -> None:
    signal = CountingSignal()
    stage = _stage(signal, DictCache())
    posts = [_post("bad" + "0" * 61), _post("c" * 64)]
    report = stage.run(posts)
    assert report.failed == {"ocr": 1}
    assert ReasonCode.SIGNAL_FAILED in posts[0].problems and "ocr" not in posts[0].signals
    assert posts[1].signals["ocr"]["text"] == "c" * 64
    stage.close()


def test_a_truncated_read_is_decided_on_but_never_cached() -> None:
    signal, cache = CountingSignal(), DictCache()
    stage = _stage(signal, cache)
    posts = [_post("cut" + "0" * 61)]
    stage.run(posts)
    assert ReasonCode.OCR_TRUNCATED in posts[0].problems
    assert cache.store == {}  # a repost reads the image again instead of the cut read
    stage.run([_post("cut" + "0" * 61)])
    assert signal.calls == 2
    stage.close()


def test_a_category_of_a_switched_off_signal_is_named_with_its_signal() -> None:
    # image_safety is not among the running signals: its categories get the hint.
    stage = SignalStage([CountingSignal()], None, threads=1)
    hint = stage.switched_off(["graphic_violence", "sexual", "spam"])
    assert "graphic_violence (signal image_safety), sexual (signal image_safety)" in hint
    assert "signals.<name>.enabled" in hint
    assert stage.switched_off(["spam"]) == ""


class OrderedSignal(Signal):
    """Records the order its reads run in; the first read waits until it is let go."""

    version: ClassVar[str] = "t"
    needs = frozenset({"pixels"})
    runs_in = "pool"
    cost = "heavy"
    fields: ClassVar[Mapping[str, FieldType]] = {"seen": "bool"}
    empty: ClassVar[SignalOutput] = {"seen": False}

    def __init__(self, name: str, log: list[str], gate: threading.Event) -> None:
        self.name = name  # type: ignore[misc]
        self.log, self.gate = log, gate

    def compute(self, subject: SignalSubject) -> SignalOutput:
        self.gate.wait(5)
        self.log.append(f"{subject.image_sha256}:{self.name}")
        return {"seen": True}


def _wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the stage never queued the reads expected"
        time.sleep(0.01)


def test_an_older_batch_in_flight_finishes_before_a_newer_one() -> None:
    # One signal thread, two signals, two batches in flight: all of the older batch's reads
    # (both signals) run before any of the newer one's.
    log: list[str] = []
    gate = threading.Event()
    stage = SignalStage(
        [OrderedSignal("first", log, gate), OrderedSignal("second", log, gate)], None, threads=1
    )
    older = threading.Thread(target=stage.run, args=([_post("a" * 64), _post("b" * 64)],))
    older.start()
    queued = stage._pool._work_queue.qsize if stage._pool else lambda: 0
    _wait_for(lambda: queued() == 3)  # the older batch's reads are all queued behind the first
    newer = threading.Thread(target=stage.run, args=([_post("c" * 64)],))
    newer.start()
    _wait_for(lambda: queued() == 5)
    gate.set()
    older.join(5)
    newer.join(5)
    assert [entry[0] for entry in log] == ["a", "b", "a", "b", "c", "c"]
    stage.close()
