"""Post, decision and dead-letter contracts; the committed JSON Schema files match the models."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from moderator.config import DecodeLimits
from moderator.errors import InvalidPostError, ReasonCode
from moderator.ingest.post_decoder import parse_post
from moderator.schema import Action, DeadLetter, Decision, Post, SourceRef
from moderator.schema.export import render, schema_documents

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
LIMITS = DecodeLimits()


def _post(**fields: object) -> bytes:
    base: dict[str, object] = {
        "post_id": "p1",
        "author_id": "a1",
        "created_at": "2026-11-01T12:00:00Z",
        "caption": "hi",
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


def test_valid_post_keeps_unknown_fields() -> None:
    parsed = parse_post(_post(source_app="ios", metadata={"n": 1}), LIMITS, key=b"p1")
    post = parsed.post
    assert not parsed.problems
    assert post.post_id == "p1"
    assert post.model_extra == {"source_app": "ios"}
    assert post.metadata == {"n": 1}
    assert not post.has_image


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", ReasonCode.INVALID_JSON),
        (None, ReasonCode.INVALID_JSON),
        (b'{"caption": "\xc3\x28"}', ReasonCode.INVALID_UTF8),
        (b"[1, 2]", ReasonCode.SCHEMA_VIOLATION),
        (_post(author_id=None), ReasonCode.SCHEMA_VIOLATION),
        (_post(post_id=7), ReasonCode.SCHEMA_VIOLATION),
        (_post(created_at="yesterday"), ReasonCode.SCHEMA_VIOLATION),
        (_post(schema_version=2), ReasonCode.UNSUPPORTED_SCHEMA_VERSION),
        (b"x" * (LIMITS.max_message_bytes + 1), ReasonCode.MESSAGE_TOO_LARGE),
    ],
)
def test_invalid_records_get_their_reason(value: bytes | None, reason: ReasonCode) -> None:
    with pytest.raises(InvalidPostError) as caught:
        parse_post(value, LIMITS)
    assert caught.value.reason is reason


@pytest.mark.parametrize(
    ("value", "key", "problems"),
    [
        (_post(caption="x" * 10_001), b"p1", [ReasonCode.CAPTION_TOO_LONG]),
        (
            _post(image_b64="aGk=", image_url="https://x.test/a.png"),
            b"p1",
            [ReasonCode.IMAGE_SOURCE_CONFLICT],
        ),
        (_post(), b"p2", [ReasonCode.KEY_MISMATCH]),
        (_post(), None, []),
        (
            _post(lang=["en"], metadata="x"),
            b"p1",
            [ReasonCode.LANG_INVALID, ReasonCode.METADATA_INVALID],
        ),
    ],
)
def test_posts_with_unusable_parts_are_read_with_their_problems(
    value: bytes, key: bytes | None, problems: list[ReasonCode]
) -> None:
    parsed = parse_post(value, LIMITS, key)
    assert list(parsed.problems) == problems
    assert parsed.post.post_id == "p1"


def test_the_contract_key_is_the_post_id_and_the_last_duplicate_is_read() -> None:
    # A reader keeping the first "post_id" would file this under p1, ours under p9: both
    # readings are decided, flagged, and the default policy sends it to review.
    value = _post()[:-1] + b',"post_id":"p9"}'
    parsed = parse_post(value, LIMITS, key=b"p1")
    assert parsed.post.post_id == "p9"
    assert list(parsed.problems) == [ReasonCode.KEY_MISMATCH, ReasonCode.DUPLICATE_FIELDS]


def test_a_caption_is_read_as_written_and_normalised_beside_it() -> None:
    parsed = parse_post(_post(caption="i will k\u200bi\u202el\u202cl  you"), LIMITS)
    assert parsed.post.caption == "i will k\u200bi\u202el\u202cl  you"
    assert parsed.text.text == "i will kill you"
    assert parsed.text.obfuscated


def test_schema_violation_detail_names_the_field_not_the_content() -> None:
    with pytest.raises(InvalidPostError) as caught:
        parse_post(_post(author_id=None, caption="secret words"), LIMITS)
    assert "author_id" in caught.value.detail
    assert "secret words" not in caught.value.detail


def test_action_severity_order() -> None:
    ordered = sorted(Action, key=lambda a: a.severity)
    assert ordered == [Action.ALLOW, Action.LABEL, Action.REVIEW, Action.BLOCK]


def test_decision_round_trips_and_rejects_unknown_fields() -> None:
    decision = Decision(
        post_id="p1",
        author_id="a1",
        action=Action.REVIEW,
        labels=["hate"],
        scores={"hate": 0.7},
        rules_fired=["hate.review"],
        policy_version="default@1",
        model_version="m1",
        source=SourceRef(topic="posts", partition=0, offset=5, timestamp_ms=1),
    )
    again = Decision.model_validate_json(decision.model_dump_json())
    assert again == decision
    with pytest.raises(ValidationError):
        Decision.model_validate({**decision.model_dump(), "surprise": 1})


def test_dead_letter_headers_round_trip_and_cap_detail() -> None:
    letter = DeadLetter(ReasonCode.IMAGE_CORRUPT, "d" * 2000, "posts", 3, 42)
    back = DeadLetter.from_headers(letter.headers())
    assert (back.reason, back.source_topic, back.source_partition, back.source_offset) == (
        ReasonCode.IMAGE_CORRUPT,
        "posts",
        3,
        42,
    )
    assert len(back.detail) == 500


def test_post_model_is_frozen() -> None:
    post = Post.model_validate_json(_post())
    with pytest.raises(ValidationError):
        post.caption = "changed"  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(schema_documents()))
def test_committed_schema_files_match_the_models(name: str) -> None:
    committed = (SCHEMAS / name).read_bytes()
    assert committed == render(schema_documents()[name]), (
        f"schemas/{name} is stale: run `moderator schema export`"
    )


@pytest.mark.parametrize(
    ("tail", "repeated"),
    [
        (b',"caption":"after the image"}', True),
        (b',"image_b64":"' + base64.b64encode(b"\x00" * 3000) + b'"}', True),
        (b',"post\\u005fid":"p1"}', True),
        (b',"metadata":{"caption":"a nested key is not a repeat"}}', False),
        (b',"note":"a \\"caption\\": in text"}', False),
    ],
)
def test_fields_given_twice_are_found_around_a_large_image(tail: bytes, repeated: bool) -> None:
    image = base64.b64encode(b"\x00" * 3000).decode()
    value = _post(image_b64=image)[:-1] + tail
    parsed = parse_post(value, LIMITS, key=b"p1")
    assert (ReasonCode.DUPLICATE_FIELDS in parsed.problems) is repeated
