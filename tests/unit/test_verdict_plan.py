"""Verdict → effects (moderator.verdicts.plan): parsing, strikes, corrections, training rows.

Pure functions: no broker, no Redis. The training rows are read back by the training data
reader `moderator train` uses, with images stored under their sha256 (created here).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from PIL import Image

from moderator.errors import RECORD_REASONS, ReasonCode
from moderator.schema import Action, Decision, SourceRef, Verdict
from moderator.training.dataset import DatasetSpec, read_dataset
from moderator.verdicts.plan import (
    InvalidVerdictError,
    RowResult,
    StrikeChange,
    corrected_decision,
    parse_verdict,
    plan_verdict,
    row_line,
    training_row,
)
from moderator.verdicts.rows import TrainingRows

SOURCE = SourceRef(topic="verdicts", partition=2, offset=41, timestamp_ms=1_780_000_000_000)
STRIKES = frozenset({Action.BLOCK})


def verdict(**changes: Any) -> Verdict:
    data: dict[str, Any] = {
        "verdict_id": "v-1",
        "post_id": "p-1",
        "author_id": "a-1",
        "decision": {
            "post_id": "p-1",
            "model_version": "m-1",
            "policy_version": "default@3",
            "action": "block",
        },
        "outcome": "violation",
        "action": "block",
        "labels": ["hate"],
        "categories_confirmed": ["hate"],
        "categories_rejected": ["violence"],
        "reviewer_id": "r-9",
        "decided_at": datetime(2026, 11, 30, 12, tzinfo=UTC).isoformat(),
        "caption": "a caption",
    }
    data.update(changes)
    return Verdict.model_validate(data)


def overturn(**changes: Any) -> Verdict:
    return verdict(
        outcome="no_violation",
        action="allow",
        labels=[],
        categories_confirmed=[],
        categories_rejected=["hate"],
        **changes,
    )


def test_a_valid_record_parses_and_its_key_must_be_the_post_id() -> None:
    raw = verdict().model_dump_json().encode()
    assert parse_verdict(raw, b"p-1") == verdict()
    assert parse_verdict(raw, None) == verdict()
    with pytest.raises(InvalidVerdictError, match="key"):
        parse_verdict(raw, b"another-post")


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, "tombstone"),
        (b"{not json", "not a valid verdict"),
        (b"[1, 2]", "not a valid verdict"),
        (orjson.dumps({"verdict_id": "v"}), "post_id: Field required"),
        (
            orjson.dumps({**orjson.loads(verdict().model_dump_json()), "action": "allow"}),
            "a violation verdict applies an action other than allow",
        ),
        (b"x" * (1024 * 1024 + 1), "bytes"),
    ],
)
def test_an_invalid_record_names_what_is_wrong(value: bytes | None, expected: str) -> None:
    with pytest.raises(InvalidVerdictError, match=expected):
        parse_verdict(value, None)


def test_the_dead_letter_reason_is_a_record_reason_never_a_post_problem() -> None:
    assert ReasonCode.INVALID_VERDICT in RECORD_REASONS


def test_the_detail_of_an_invalid_verdict_does_not_echo_its_caption() -> None:
    data = orjson.loads(verdict().model_dump_json())
    data["caption"] = "secret words " * 2000  # over the caption cap
    with pytest.raises(InvalidVerdictError) as caught:
        parse_verdict(orjson.dumps(data), None)
    assert "caption" in caught.value.detail and "secret" not in caught.value.detail


@pytest.mark.parametrize(
    "reviewed, expected",
    [
        (verdict(), StrikeChange.ADD),  # confirmed block
        (verdict(action="label"), StrikeChange.REMOVE),  # violation, but no strike action
        (overturn(), StrikeChange.REMOVE),
        (
            verdict(decision={**verdict().decision.model_dump(), "action": "review"}),
            StrikeChange.ADD,
        ),
    ],
)
def test_the_reviewers_action_decides_the_strike(reviewed: Verdict, expected: StrikeChange) -> None:
    assert plan_verdict(reviewed, SOURCE, STRIKES, write_rows=False).strike is expected


def test_the_strike_write_carries_the_reviewers_time_or_none_to_remove() -> None:
    added = plan_verdict(verdict(), SOURCE, STRIKES, write_rows=False)
    assert added.strike_write() == ("a-1", "p-1", verdict().decided_at.timestamp())
    removed = plan_verdict(overturn(), SOURCE, STRIKES, write_rows=False)
    assert removed.strike_write() == ("a-1", "p-1", None)


def test_an_overturned_appeal_is_corrected_by_a_new_decision_record() -> None:
    appeal = overturn(appeal_id="ap-7")
    record = corrected_decision(appeal, SOURCE)
    assert record is not None
    decision = Decision.model_validate(record)  # the decision contract, as consumers read it
    assert (decision.post_id, decision.author_id) == ("p-1", "a-1")
    assert (decision.action, decision.labels) == (Action.ALLOW, [])
    assert (decision.model_version, decision.policy_version) == ("m-1", "default@3")
    assert decision.correction is not None
    assert decision.correction.model_dump() == {
        "reason": "appeal_overturned",
        "verdict_id": "v-1",
        "appeal_id": "ap-7",
        "corrected_action": Action.BLOCK,
    }
    assert decision.source == SOURCE


@pytest.mark.parametrize(
    "reviewed",
    [
        overturn(),  # not an appeal: the reviewer's tool tells the platform itself
        verdict(appeal_id="ap-7"),  # appeal upheld
        overturn(appeal_id="ap-7", decision={**verdict().decision.model_dump(), "action": "allow"}),
    ],
    ids=["overturn-without-appeal", "appeal-upheld", "appeal-of-an-allow"],
)
def test_only_an_appeal_that_overturns_an_acting_decision_is_corrected(reviewed: Verdict) -> None:
    assert corrected_decision(reviewed, SOURCE) is None


def test_training_rows_say_why_there_is_none() -> None:
    assert training_row(verdict(categories_confirmed=[]))[1] is RowResult.NO_CATEGORY
    assert training_row(overturn(caption=None))[1] is RowResult.NO_CONTENT
    assert plan_verdict(verdict(), SOURCE, STRIKES, write_rows=False).row_result is RowResult.OFF
    row, result = training_row(overturn(caption=None, image_digest="ab" * 32))
    assert result is RowResult.WRITTEN and row is not None
    assert (row["text"], row["img"], row["label"]) == ("", "ab" * 32, [])


def test_training_rows_join_caption_and_image_text_as_the_model_reads_them() -> None:
    row, _ = training_row(verdict(image_text="text in the image"))
    assert row is not None
    assert row["text"] == "a caption | text in the image"
    assert row["label"] == ["hate"] and row["categories_rejected"] == ["violence"]
    assert "reviewer_id" not in row and "r-9" not in row_line(row).decode()


def _image(root: Path, shade: int) -> str:
    """An image stored under its sha256, as a team's image store keeps them; its digest."""
    path = root / "tmp.png"
    Image.new("RGB", (8, 8), (shade, 0, 0)).save(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.rename(root / digest)
    return digest


def test_moderator_train_reads_the_rows_with_images_by_digest(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    verdicts = [
        verdict(verdict_id="v-1", image_digest=_image(images, 10)),
        overturn(verdict_id="v-2", image_digest=_image(images, 200), caption=None),
        verdict(verdict_id="v-3", categories_confirmed=["violence"], categories_rejected=[]),
    ]
    rows = TrainingRows(tmp_path / "rows" / "verdicts.jsonl")
    lines = []
    for reviewed in verdicts:
        row, _ = training_row(reviewed)
        assert row is not None
        lines.append(row_line(row))
    rows.append(lines)
    spec = DatasetSpec(label_fields=["label"], categories=["hate", "violence"], image_root=images)
    dataset = read_dataset(rows.path, spec)
    assert [e.text for e in dataset.examples] == ["a caption", "", "a caption"]
    assert [e.image.name if e.image else None for e in dataset.examples] == [
        verdicts[0].image_digest,
        verdicts[1].image_digest,
        None,
    ]
    np.testing.assert_array_equal(dataset.labels(), [[1, 0], [0, 0], [0, 1]])


def test_an_unfinished_last_line_is_cut_when_the_file_is_opened_again(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"id": "v-1"}\n{"id": "v-2", "te')  # a process killed mid-write
    rows = TrainingRows(path)
    assert path.read_bytes() == b'{"id": "v-1"}\n'
    rows.append([b'{"id": "v-2"}\n'])
    assert path.read_bytes() == b'{"id": "v-1"}\n{"id": "v-2"}\n'
