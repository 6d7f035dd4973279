"""The contract every registered signal keeps (moderator.signals.base): run for each of them.

A new signal passes these by being listed in moderator.signals.registry; its own behaviour
gets its own test file next to this one.
"""

from __future__ import annotations

import hashlib
import io
from functools import cache

import numpy as np
import orjson
import pytest

from moderator.demo.memes import render_meme
from moderator.policy.cel.context import OBJECT_FIELDS
from moderator.signals import SIGNAL_TYPES, Signal, SignalSettings, SignalSubject, check_output
from moderator.signals.base import NAME
from moderator.signals.embeddings import EmbeddingSignals, model_embeddings

FIELD_TYPES = {"string", "double", "int", "bool", "list", "vector"}


def _subject() -> SignalSubject:
    image = render_meme("contract test text", np.random.default_rng(3), layout="plain")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    reading = np.asarray(image, dtype=np.uint8)
    pixels = np.asarray(image.resize((224, 224)), dtype=np.uint8)
    return SignalSubject(
        image_sha256=hashlib.sha256(data).hexdigest(),
        image_bytes=data,
        pixels=pixels,
        reading_image=reading,
        caption="a caption",
    )


@pytest.fixture(scope="module")
def subject() -> SignalSubject:
    return _subject()


@cache
def _starter_embeddings() -> EmbeddingSignals:
    from moderator.model import load_model

    return model_embeddings(load_model(None))


def _built(kind: type[Signal]) -> Signal:
    if kind.runs_in == "replica":  # built from the model: the packaged starter
        return getattr(_starter_embeddings(), kind.kind)  # type: ignore[attr-defined]
    signal = kind.from_settings(SignalSettings())
    assert signal is not None, f"{kind.name} is off by default"
    return signal


def test_names_are_unique_identifiers() -> None:
    names = [kind.name for kind in SIGNAL_TYPES]
    assert len(names) == len(set(names))
    assert all(NAME.match(name) for name in names)


@pytest.mark.parametrize("kind", SIGNAL_TYPES, ids=lambda k: k.name)
def test_declaration(kind: type[Signal]) -> None:
    assert kind.version and kind.runs_in in ("ingest", "pool", "replica")
    assert kind.cost in ("trivial", "moderate", "heavy")
    assert kind.fields and set(kind.fields.values()) <= FIELD_TYPES
    assert kind.needs <= {"image_bytes", "pixels", "reading_image", "caption"} and kind.needs
    signal = _built(kind)
    assert check_output(signal, signal.empty) == []
    # Policies can name every field but vectors: signals.<name>.<field>, typed.
    assert set(OBJECT_FIELDS.get(f"Signal.{kind.name}", {})) == set(kind.policy_fields())
    assert ("vector" in kind.fields.values()) == (kind.runs_in == "replica")
    if "reading_image" in kind.needs:
        assert signal.reading_side is not None


@pytest.mark.parametrize("kind", SIGNAL_TYPES, ids=lambda k: k.name)
def test_outputs_are_declared_deterministic_and_cacheable(
    kind: type[Signal], subject: SignalSubject
) -> None:
    signal = _built(kind)
    first = signal.run(subject)
    assert check_output(signal, first) == []
    again = signal.run(subject)
    vectors = [name for name, type_ in kind.fields.items() if type_ == "vector"]
    for name in vectors:  # cached as raw float32 by the feature cache
        np.testing.assert_allclose(again[name], first[name], rtol=1e-5, atol=1e-6)
        assert first[name].shape == (signal.dim,)  # type: ignore[attr-defined]
    plain = {name: value for name, value in first.items() if name not in vectors}
    assert {name: again[name] for name in plain} == plain
    assert orjson.loads(orjson.dumps(plain)) == plain  # the signal cache stores JSON


@pytest.mark.parametrize("kind", SIGNAL_TYPES, ids=lambda k: k.name)
def test_a_post_without_what_it_reads_gets_the_empty_outputs(kind: type[Signal]) -> None:
    signal = _built(kind)
    bare = SignalSubject() if "caption" in kind.needs else SignalSubject(caption="only words")
    assert not signal.applies_to(bare)
    assert signal.run(bare) == signal.empty


@pytest.mark.parametrize("kind", SIGNAL_TYPES, ids=lambda k: k.name)
def test_cache_key(kind: type[Signal], subject: SignalSubject) -> None:
    signal = _built(kind)
    key = signal.cache_key(subject)
    if kind.runs_in == "ingest":
        assert key is None  # computed while decoding, never worth a round trip
        return
    assert key is not None and subject.image_sha256 is not None
    assert key.startswith(f"{kind.name}:") and signal.qualified_version in key
    if "caption" in kind.needs:  # keyed by the text it reads: another caption, another key
        assert signal.cache_key(SignalSubject(caption="other words")) != key
        assert signal.cache_key(SignalSubject()) is None
        return
    assert subject.image_sha256 in key
    # The caption is not part of what image signals read: a repost with another caption hits.
    other = SignalSubject(
        image_sha256=subject.image_sha256,
        pixels=subject.pixels,
        reading_image=subject.reading_image,
        caption="x",
    )
    assert signal.cache_key(other) == key
    assert signal.cache_key(SignalSubject()) is None


def test_switched_off_signals_are_not_built() -> None:
    off = SignalSettings.model_validate(
        {name: {"enabled": False} for name in SignalSettings.model_fields if name != "threads"}
    )
    built = [kind.from_settings(off) for kind in SIGNAL_TYPES if kind.runs_in == "pool"]
    assert built and all(signal is None for signal in built)
