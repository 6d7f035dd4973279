"""Policies on the text OCR read from the image: post.image_text, signals.ocr, and what the
image text changed (PolicyResult.image_text_changed)."""

from __future__ import annotations

from types import SimpleNamespace

from moderator.policy.loader import load_policy
from moderator.policy.service import PolicyService
from moderator.schema import Action
from moderator.text import normalise_text
from tests.paths import DEFAULT_POLICY

SCORES = {
    "hate": 0.01,
    "offensive": 0.02,
    "violence": 0.01,
    "weapons": 0.0,
    "drugs": 0.0,
    "alcohol": 0.0,
    "gambling": 0.0,
    "swimwear": 0.0,
    "sexual": 0.0,
    "graphic_violence": 0.0,
}


def _decoded(image_text: str) -> SimpleNamespace:
    """A stand-in with DecodedPost's attributes (moderator.policy.service.DecodedPostLike)."""
    ocr = {"text": image_text, "lines": 1, "confidence": 0.9, "truncated": False}
    post = SimpleNamespace(
        post_id="p1",
        author_id="a1",
        caption="look at this",
        lang="en",
        image_b64="x",
        image_url=None,
        metadata={},
    )
    return SimpleNamespace(
        post=post,
        pixels=None,
        image_sha256=None,
        problems={},
        caption_text=normalise_text("look at this"),
        signals={"ocr": ocr} if image_text else {},
        image_text=image_text,
    )


def test_a_threat_in_the_image_text_is_reviewed_and_marked_as_changed_by_it() -> None:
    service = PolicyService(load_policy(DEFAULT_POLICY))
    result = service.decide_post(_decoded("i will kill you tomorrow"), SCORES)  # type: ignore[arg-type]
    assert result.action is Action.REVIEW
    assert "violence.threat_terms_in_image" in result.rules_fired
    assert result.image_text_changed


def test_harmless_image_text_changes_nothing() -> None:
    service = PolicyService(load_policy(DEFAULT_POLICY))
    result = service.decide_post(_decoded("monday coffee again"), SCORES)  # type: ignore[arg-type]
    assert result.action is Action.ALLOW and not result.image_text_changed
    bare = service.decide_post(_decoded(""), SCORES)  # type: ignore[arg-type]
    assert bare.action is Action.ALLOW and not bare.image_text_changed


def test_a_policy_that_never_reads_image_text_is_never_changed_by_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "p.yaml").write_text(
        "name: p\nversion: '1'\ncategories: [hate]\n"
        "rules:\n- {id: r, when: 'scores.hate > 0.5', action: block}\n"
    )
    policy = load_policy(tmp_path / "p.yaml")
    assert not policy.reads_image_text
    result = PolicyService(policy).decide_post(_decoded("i will kill you"), {"hate": 0.0})  # type: ignore[arg-type]
    assert result.action is Action.ALLOW and not result.image_text_changed
    assert load_policy(DEFAULT_POLICY).reads_image_text
