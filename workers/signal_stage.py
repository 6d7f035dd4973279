"""The pool signals of a batch (OCR, image safety): cache first, then the signal threads.

Runs in the batch's scoring thread, before its feature lookup, so the loop keeps polling while
images are read and the classifier replicas never wait on OCR. Per signal: posts are keyed by
the signal's cache key (image digest + signal version), so a repost or a repeat within the
batch reads the image once; misses run side by side on the signal threads (onnxruntime
releases the GIL) and are written back. A failing signal never costs a post: the post is
decided without that signal's outputs and lists the ``signal_failed`` problem; OCR that hit
a cap lists ``ocr_truncated``. The reading copy of each image is released afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from moderator.cache import SignalCache
from moderator.errors import ReasonCode
from moderator.ingest import DecodedPost
from moderator.signals import SIGNAL_TYPES, Signal, SignalOutput

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Plan:
    """One signal's work for one batch: rows by work key, cached outputs, submitted reads."""

    signal: Signal
    rows: dict[str, list[int]] = field(default_factory=dict)
    cached: dict[str, SignalOutput] = field(default_factory=dict)
    futures: dict[str, Future[SignalOutput]] = field(default_factory=dict)


@dataclass(slots=True)
class SignalReport:
    """What the stage did for one batch (for the decision's cache_hits and the logs)."""

    computed: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    hits: dict[int, list[str]] = field(default_factory=dict)
    """Row → the signals whose outputs came from the cache."""


class SignalStage:
    def __init__(self, signals: Sequence[Signal], cache: SignalCache | None, threads: int) -> None:
        self.signals = list(signals)
        self.cache = cache
        self._pool = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="signal")
            if self.signals
            else None
        )

    def categories(self, model_categories: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Category → (signal, field) for the categories the signals score and the model does
        not: the model's own score wins where both have one."""
        return {
            category: (signal.name, output)
            for signal in self.signals
            for category, output in signal.categories.items()
            if category not in model_categories
        }

    def switched_off(self, categories: Sequence[str]) -> str:
        """Why `categories` are not scored when a signal that scores them is switched off: a
        hint for the error a policy naming them gets ('' when none is)."""
        running = {signal.name for signal in self.signals}
        off = {
            category: kind.name
            for kind in SIGNAL_TYPES
            if kind.name not in running
            for category in kind.categories
            if category in categories
        }
        if not off:
            return ""
        listed = ", ".join(f"{category} (signal {name})" for category, name in sorted(off.items()))
        return (
            f". Scored by signals that are switched off: {listed}; switch them on in "
            "signals.<name>.enabled, or drop those categories and their rules from the policy"
        )

    @property
    def reading_side(self) -> int | None:
        """The longest side of the reading copy the decoder keeps (None: no signal reads it)."""
        sides = [s.reading_side for s in self.signals if s.reading_side is not None]
        return max(sides) if sides else None

    def run(self, posts: Sequence[DecodedPost]) -> SignalReport:
        """Fill each post's `signals` with every pool signal's outputs.

        Every signal's work for the batch is submitted at once, before any is awaited: the
        threads take work in order of submission, so an older batch in flight finishes before
        a newer one (submitting per signal put an older batch's second signal behind the newer
        batches' first, and the first decision of a backlog waited for several batches).
        """
        report = SignalReport()
        plans = [self._submit(signal, posts) for signal in self.signals]
        for plan in plans:
            self._collect(plan, posts, report)
        for post in posts:
            post.release_reading_image()
        return report

    def _submit(self, signal: Signal, posts: Sequence[DecodedPost]) -> _Plan:
        assert self._pool is not None
        subjects = [post.subject() for post in posts]
        plan = _Plan(signal)
        for row, subject in enumerate(subjects):
            if not signal.applies_to(subject):
                posts[row].signals[signal.name] = signal.empty
                continue
            key = signal.cache_key(subject) or f"row:{row}"
            plan.rows.setdefault(key, []).append(row)
        cacheable = [key for key in plan.rows if not key.startswith("row:")]
        plan.cached = self.cache.get_many(signal, cacheable) if self.cache is not None else {}
        plan.futures = {
            key: self._pool.submit(signal.run, subjects[members[0]])
            for key, members in plan.rows.items()
            if key not in plan.cached
        }
        return plan

    def _collect(self, plan: _Plan, posts: Sequence[DecodedPost], report: SignalReport) -> None:
        signal, cached = plan.signal, plan.cached
        fresh: dict[str, SignalOutput] = {}
        for key, members in plan.rows.items():
            output = cached.get(key)
            if output is None:
                try:
                    output = fresh[key] = plan.futures[key].result()
                except Exception as exc:
                    # Decided without it: a signal bug or a hostile image must not stop the loop.
                    logger.warning("signal %s failed: %s: %s", signal.name, type(exc).__name__, exc)
                    report.failed[signal.name] = report.failed.get(signal.name, 0) + len(members)
                    for row in members:
                        posts[row].add_problem(ReasonCode.SIGNAL_FAILED, f"{signal.name} failed")
                    continue
            for row in members:
                _record(posts[row], signal, output)
                if key in cached:
                    report.hits.setdefault(row, []).append(signal.name)
        report.computed[signal.name] = len(fresh)
        report.cached[signal.name] = len(cached)
        if self.cache is not None:
            # A read cut short (a time budget hit under load) is not what every repost should
            # get: only complete outputs are cached.
            self.cache.put_many(
                {
                    key: output
                    for key, output in fresh.items()
                    if not key.startswith("row:") and output.get("truncated") is not True
                }
            )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _record(post: DecodedPost, signal: Signal, output: SignalOutput) -> None:
    post.signals[signal.name] = output
    if output.get("truncated") is True and signal.name == "ocr":
        post.add_problem(ReasonCode.OCR_TRUNCATED, "OCR stopped at a cap; decided on what it read")
