"""Scores + policy → decision records for one scored batch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from kafka.consumer.fetcher import ConsumerRecord

from moderator.ingest import DecodedPost
from moderator.ingest.media import FRAME_HASHES, MEDIA_SIGNAL
from moderator.policy import PolicyService
from moderator.policy.inputs import SEMANTIC_SIGNAL
from moderator.schema import DECISION_SCHEMA_VERSION
from moderator.serving import ScoreResponse
from workers.features import WorstFrame, frame_rows, pool_frames

# One decision as it goes on the wire: the fields of moderator.schema.Decision, in its
# order, as plain JSON-ready values. Built without pydantic: validating our own output cost
# ~30 µs of the ~240 µs a post takes in the no-op ingest profile (docs/throughput.md).
# tests/unit/test_worker_decisions.py checks that every record validates as a Decision.
DecisionRecord = dict[str, Any]


@dataclass(slots=True)
class ValidPost:
    record: ConsumerRecord
    decoded: DecodedPost


# Enough for a reviewer to read the meme; the full text stays in the signal cache.
RECORD_IMAGE_TEXT_CHARS = 500
_DIGESTS = frozenset({"sha256", "md5", "pdq", FRAME_HASHES, MEDIA_SIGNAL})


def _pool_signals(signals: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pool signals' outputs for the record: OCR's text is `image_text`, digests are
    the image's identity and not repeated."""
    return {
        name: {key: value for key, value in outputs.items() if (name, key) != ("ocr", "text")}
        for name, outputs in signals.items()
        if name not in _DIGESTS
    }


def _image_digest(signals: Mapping[str, Mapping[str, Any]]) -> str | None:
    digest = signals.get("sha256")
    return str(digest["hash"]) if digest else None


def _attach_semantic(valid: list[ValidPost], response: ScoreResponse) -> None:
    """Each post's semantic-bank matches (bank → similarity, nearest entry id) as the signal
    `semantic_banks`: policies read it with semantic_match(bank), the record's `signals` show
    it. A post with several frames gets its best frame's match (frame rows follow the posts'
    rows: frame_rows). Banks the post had nothing to compare with are left out (they read as
    0.0)."""
    if not response.semantic:
        return
    banks = [
        (name, np.round(matches.similarity.astype(np.float64), 6).tolist(), matches.nearest)
        for name, matches in response.semantic.items()
    ]
    rows: list[list[int]] = [[index] for index in range(len(valid))]
    if len(banks[0][2]) > len(valid):
        extra = frame_rows([item.decoded for item in valid])
        for row, (post, _) in enumerate(extra, start=len(valid)):
            rows[post].append(row)
    for item, post_rows in zip(valid, rows, strict=True):
        found: dict[str, dict[str, Any]] = {}
        for name, similarity, nearest in banks:
            candidates = [row for row in post_rows if nearest[row]]
            if candidates:
                best = max(candidates, key=similarity.__getitem__)
                found[name] = {"similarity": similarity[best], "nearest": nearest[best]}
        if found:
            item.decoded.signals[SEMANTIC_SIGNAL] = found


def make_decisions(
    valid: list[ValidPost],
    response: ScoreResponse,
    cache_hits: list[list[str]],
    policy: PolicyService,
    timings_ms: dict[str, float],
    signal_categories: Mapping[str, tuple[str, str]] | None = None,
) -> list[DecisionRecord]:
    """One decision record per valid post, in `valid` order. `signal_categories`: category →
    (signal, field) scored by a signal for a model that does not score it; 0.0 when the signal
    did not run on the post (no image, or it failed)."""
    policy.begin_batch()  # flood quarantine, when enabled: a Redis round trip when a check is due
    categories = response.categories
    # Frame rows (animations, albums, videos) pooled back to one row per post.
    pooled, worst_frames = pool_frames(
        [item.decoded for item in valid], response.scores, response.frame_logits
    )
    # Rounded once per batch: a re-delivered post gets byte-identical scores.
    rows = np.round(pooled.astype(np.float64), 6).tolist()
    decisions: list[DecisionRecord] = []
    _attach_semantic(valid, response)
    for row, item, hits, worst in zip(rows, valid, cache_hits, worst_frames, strict=True):
        scores = dict(zip(categories, row, strict=True))
        post, record = item.decoded.post, item.record
        worst_frame = _worst_frame(item.decoded, worst, categories)
        for category, (signal, output) in (signal_categories or {}).items():
            outputs = item.decoded.signals.get(signal)
            scores[category] = round(float(outputs[output]), 6) if outputs else 0.0
        result = policy.decide_post(item.decoded, scores, record.timestamp)
        decisions.append(
            {
                "schema_version": DECISION_SCHEMA_VERSION,
                "post_id": post.post_id,
                "author_id": post.author_id,
                "action": result.action.value,
                "labels": list(result.labels),
                "scores": scores,
                "rules_fired": list(result.rules_fired),
                "shadow_rules": list(result.shadow_rules),
                "problems": [problem.value for problem in item.decoded.problems],
                "policy_version": result.policy_version,
                "model_version": response.model_version,
                "cache_hits": list(hits),
                "image_text": item.decoded.image_text[:RECORD_IMAGE_TEXT_CHARS],
                "image_text_changed": result.image_text_changed,
                "signals": _pool_signals(item.decoded.signals),
                "image_digest": _image_digest(item.decoded.signals),
                "explanations": dict(result.explanations),
                "notices": list(result.notices),
                "correction": None,
                "timings_ms": dict(timings_ms),
                "source": {
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "timestamp_ms": record.timestamp,
                },
                "worst_frame": worst_frame,
            }
        )
    return decisions


def _worst_frame(
    decoded: DecodedPost, worst: WorstFrame | None, categories: list[str]
) -> dict[str, Any] | None:
    """The record's worst_frame, and what policies read of it (post.frames, worst_frame)."""
    if worst is None:
        return None
    frame = decoded.frames[worst.index]
    decoded.signals[MEDIA_SIGNAL] = {"frames": len(decoded.frames), "worst_frame": worst.index}
    scores = np.round(worst.scores.astype(np.float64), 6).tolist()
    return {
        "index": worst.index,
        "frames": len(decoded.frames),
        "source": frame.source,
        "position": frame.position,
        "scores": dict(zip(categories, scores, strict=True)),
    }
