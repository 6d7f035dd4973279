"""Policies read semantic banks with semantic_match(); the worker puts the replica's answer
into the policy input and the decision record. No model, no Ray: responses are built here."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from kafka.consumer.fetcher import ConsumerRecord

from moderator.ingest import DecodedPost
from moderator.ingest.media import Frame
from moderator.policy import PolicyService, load_policy
from moderator.policy.errors import PolicyError
from moderator.schema import Decision, Post
from moderator.serving import ScoreResponse
from moderator.serving.messages import SemanticMatches
from tests.kafka_records import consumer_record
from workers.decisions import ValidPost, make_decisions

POLICY = """\
name: semantic
version: "1"
categories: [hate]
semantic_banks:
  known_hateful_memes: {description: known-bad memes}
rules:
  - id: known.meme
    when: semantic_match("known_hateful_memes") > 0.92
    action: block
    labels: [known_meme]
"""


def _policy(tmp_path: Path, text: str = POLICY) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_an_undeclared_bank_is_a_load_error_with_its_line(tmp_path: Path) -> None:
    text = POLICY.replace('semantic_match("known_hateful_memes")', 'semantic_match("typo")')
    with pytest.raises(PolicyError) as caught:
        load_policy(_policy(tmp_path, text))
    assert "policy.yaml:8:" in str(caught.value)
    assert "no semantic bank named 'typo'" in str(caught.value)


def test_the_policy_records_which_banks_its_rules_read(tmp_path: Path) -> None:
    policy = load_policy(_policy(tmp_path))
    assert "semantic:known_hateful_memes" in policy.reads
    assert policy.semantic_banks == {"known_hateful_memes"}


def test_a_policy_reading_a_bank_the_replica_does_not_serve_is_refused(tmp_path: Path) -> None:
    """The worker checks at start (and on every reload) against ModelInfo.semantic_banks:
    a rule on an unserved bank would read 0.0 for every post."""
    policy = load_policy(_policy(tmp_path))
    policy.check_categories(["hate"], ["known_hateful_memes", "other"])
    policy.check_categories(["hate"])  # banks unknown (not checked)
    with pytest.raises(PolicyError, match=r"does not serve: \['known_hateful_memes'\]"):
        policy.check_categories(["hate"], [])


def _record(offset: int) -> ConsumerRecord:
    return consumer_record(offset)


def test_matches_reach_the_policy_and_the_record(tmp_path: Path) -> None:
    policy = PolicyService(load_policy(_policy(tmp_path)))
    posts = [
        ValidPost(
            _record(i),
            DecodedPost(
                post=Post(post_id=f"p{i}", author_id="a", created_at=datetime.now(UTC), caption=c),
                pixels=None,
                image_sha256=None,
            ),
        )
        for i, c in enumerate(["a known meme", "something else", ""])
    ]
    response = ScoreResponse(
        "m1",
        ["hate"],
        np.zeros((3, 1), np.float32),
        new_image_embeddings=np.zeros((0, 4), np.float32),
        new_text_embeddings=np.zeros((0, 4), np.float32),
        image_encode_ms=0.0,
        text_encode_ms=0.0,
        score_ms=0.0,
        semantic={
            "known_hateful_memes": SemanticMatches(
                np.array([0.97, 0.40, 0.0], np.float32), ["meme-17", "meme-3", ""]
            )
        },
    )
    decisions = make_decisions(posts, response, [[], [], []], policy, {})
    first, second, third = (Decision.model_validate(d) for d in decisions)
    assert (first.action.value, first.rules_fired) == ("block", ["known.meme"])
    assert second.action.value == third.action.value == "allow"
    assert first.signals["semantic_banks"] == {
        "known_hateful_memes": {"similarity": pytest.approx(0.97), "nearest": "meme-17"}
    }
    assert second.signals["semantic_banks"]["known_hateful_memes"]["nearest"] == "meme-3"
    assert "semantic_banks" not in third.signals  # nothing to compare: reads as 0.0


def test_a_post_with_several_frames_takes_its_best_frame(tmp_path: Path) -> None:
    """Rows 0..1 are the posts (frame 0 of the video post), rows 2..3 the video's frames 1..2."""
    policy = PolicyService(load_policy(_policy(tmp_path)))
    pixels = np.zeros((4, 4, 3), np.uint8)
    frames = tuple(Frame(pixels, f"d{i}", "video", i) for i in range(3))
    posts = [
        ValidPost(
            _record(i),
            DecodedPost(
                post=Post(post_id=f"p{i}", author_id="a", created_at=datetime.now(UTC), caption=""),
                pixels=pixels,
                image_sha256=None,
                frames=post_frames,
            ),
        )
        for i, post_frames in enumerate([frames, ()])
    ]
    response = ScoreResponse(
        "m1",
        ["hate"],
        np.zeros((4, 1), np.float32),
        new_image_embeddings=np.zeros((0, 4), np.float32),
        new_text_embeddings=np.zeros((0, 4), np.float32),
        image_encode_ms=0.0,
        text_encode_ms=0.0,
        score_ms=0.0,
        semantic={
            "known_hateful_memes": SemanticMatches(
                np.array([0.30, 0.50, 0.96, 0.40], np.float32), ["a", "b", "c", "d"]
            )
        },
    )
    video, still = make_decisions(posts, response, [[], []], policy, {})
    assert video["signals"]["semantic_banks"]["known_hateful_memes"]["nearest"] == "c"
    assert video["action"] == "block"
    assert still["signals"]["semantic_banks"]["known_hateful_memes"]["nearest"] == "b"


def test_policy_test_cases_give_matches_as_the_signal(tmp_path: Path) -> None:
    from moderator.policy.cases import load_cases, run_cases

    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "cases:\n"
        "  - name: near-duplicate\n"
        "    input:\n"
        "      signals: {semantic_banks: {known_hateful_memes: {similarity: 0.95, nearest: m}}}\n"
        "    expect: {action: block}\n"
        "  - name: below the threshold\n"
        "    input:\n"
        "      signals: {semantic_banks: {known_hateful_memes: {similarity: 0.9, nearest: m}}}\n"
        "    expect: {action: allow}\n"
    )
    report = run_cases(load_policy(_policy(tmp_path)), load_cases(cases))
    assert [o.passed for o in report.outcomes] == [True, True], report.failed
