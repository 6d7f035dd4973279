"""Every hostile input gets its reason code, in bounded memory; the decoder never crashes."""

from __future__ import annotations

import contextlib
import tracemalloc

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moderator.errors import InvalidPostError
from moderator.ingest import decode_post
from tests.hostile_corpus import BASE, LIMITS, HostileCase, hostile_cases

CASES = hostile_cases()
MEMORY_BOUND = 64 * 2**20  # far below what any of these would need if fully decoded


def test_corpus_is_broad() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)
    assert len({c.reason for c in CASES}) >= 10


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_gets_its_reason_in_bounded_memory(case: HostileCase) -> None:
    tracemalloc.start()
    try:
        try:
            decode_post(case.value, LIMITS, 224)
            outcome = None
        except InvalidPostError as exc:
            outcome = exc.reason
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome == case.reason
    assert peak - len(case.value) < MEMORY_BOUND


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
