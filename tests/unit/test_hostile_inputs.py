"""Every hostile input gets its reason code, in bounded memory; the decoder never crashes."""

from __future__ import annotations

import contextlib
import tracemalloc

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moderator.errors import PROBLEM_REASONS, RECORD_REASONS, InvalidPostError
from moderator.ingest import decode_post
from tests.hostile_corpus import BASE, LIMITS, HostileCase, hostile_cases

CASES = hostile_cases()
MEMORY_BOUND = 64 * 2**20  # far below what any of these would need if fully decoded


def test_corpus_is_broad() -> None:
    assert len(CASES) >= 90
    assert len({c.name for c in CASES}) == len(CASES)
    assert len({c.reason for c in CASES if c.reason is not None}) >= 5
    assert len({p for c in CASES for p in c.problems}) >= 15


def test_only_records_that_are_not_posts_are_dead_lettered() -> None:
    assert {c.reason for c in CASES if c.reason is not None} <= RECORD_REASONS
    assert {p for c in CASES for p in c.problems} <= PROBLEM_REASONS


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_gets_its_outcome_in_bounded_memory(case: HostileCase) -> None:
    tracemalloc.start()
    try:
        try:
            decoded = decode_post(case.value, LIMITS, 224, key=case.key or b"h")
            outcome, problems = None, frozenset(decoded.problems)
        except InvalidPostError as exc:
            outcome, problems = exc.reason, frozenset()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome == case.reason
    assert problems == case.problems
    assert peak - len(case.value) < MEMORY_BOUND


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.problems], ids=[c.name for c in CASES if c.problems]
)
def test_settings_can_dead_letter_a_problem_again(case: HostileCase) -> None:
    first = sorted(case.problems)[0]
    limits = LIMITS.model_copy(update={"dead_letter_problems": [first]})
    with pytest.raises(InvalidPostError) as caught:
        decode_post(case.value, limits, 224, key=case.key or b"h")
    assert caught.value.reason in case.problems


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash_the_decoder(value: bytes) -> None:
    with contextlib.suppress(InvalidPostError):
        decode_post(value, LIMITS, 32)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*BASE, "image_b64", "image_url", "metadata", "lang", "schema_version"]),
        _json,
        max_size=8,
    )
)
def test_arbitrary_json_posts_never_crash_the_decoder(fields: dict[str, object]) -> None:
    with contextlib.suppress(InvalidPostError):
        decode_post(orjson.dumps({**BASE, **fields}), LIMITS, 32)
