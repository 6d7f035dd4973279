"""The metric catalogue: every label is a bounded dimension, never user data."""

from __future__ import annotations

import orjson
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from moderator import metrics
from moderator.config import DEFAULT_POLICY, DecodeLimits
from moderator.errors import ReasonCode
from moderator.ingest import decode_post
from moderator.policy import CompiledPolicy, PolicyService, load_policy
from moderator.schema import Action

# Each of these takes values from a closed set (enums, rule ids, partitions, model/policy
# versions); a new label must be added here on purpose.
BOUNDED_LABELS = {
    "action",
    "category",
    "reason",
    "stage",
    "topic",
    "partition",
    "outcome",
    "result",
    "kind",
    "rule",
    "mode",
    "model_version",
    "policy_version",
    "version",
    "name",
}


def _catalogue() -> list[MetricWrapperBase]:
    return [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]


def test_every_label_name_is_a_bounded_dimension() -> None:
    found = _catalogue()
    assert len(found) >= 15
    for metric in found:
        labels = set(metric._labelnames)
        assert labels <= BOUNDED_LABELS, (metric._name, labels - BOUNDED_LABELS)


def _closed_values(policy: CompiledPolicy) -> dict[str, set[str]]:
    """The values each label may take: enums, the module's own tuples, the policy's ids."""
    return {
        "action": {a.value for a in Action},
        "reason": {r.value for r in ReasonCode} | set(metrics.UNREADABLE_REASONS),
        "stage": set(metrics.STAGES),
        "kind": set(metrics.CACHE_KINDS),
        "result": set(metrics.CACHE_RESULTS)
        | set(metrics.VERDICT_CATEGORY_RESULTS)
        | set(metrics.STRIKE_CHANGES)
        | set(metrics.TRAINING_ROW_RESULTS),
        "outcome": set(metrics.RELOAD_OUTCOMES)
        | set(metrics.COMMIT_OUTCOMES)
        | set(metrics.VERDICT_OUTCOMES)
        | set(metrics.APPEAL_OUTCOMES),
        "mode": set(metrics.RULE_MODES),
        "rule": {rule.id for rule in policy.rules},
        "category": set(policy.categories) | {label for r in policy.rules for label in r.labels},
    }


def test_label_values_come_from_closed_sets_never_from_the_post() -> None:
    # Decide posts full of user data, then read every series the process exports: each
    # label value must come from its closed set, and none may echo the post.
    policy = load_policy(DEFAULT_POLICY)
    service = PolicyService(policy)
    user_data = {"post-7f3a91", "author-9c1b22", "secret caption words", "k\u0456ll"}
    for caption in ("secret caption words", "i will k\u0456ll you", "x" * 10_500):
        value = orjson.dumps(
            {
                "post_id": "post-7f3a91",
                "author_id": "author-9c1b22",
                "created_at": "2026-11-30T00:00:00Z",
                "caption": caption,
                "image_b64": "bm90IGFuIGltYWdl",
            }
        )
        decoded = decode_post(value, DecodeLimits(), 32, key=b"another-key")
        service.decide_post(decoded, {"hate": 0.9, "violence": 0.7}, 1_780_000_000_000)
    closed = _closed_values(policy)
    checked = 0
    for family in REGISTRY.collect():
        if not family.name.startswith("moderator_"):
            continue
        for sample in family.samples:
            for name, value in sample.labels.items():
                assert value not in user_data, (family.name, name)
                if name in closed and name not in ("rule", "category"):
                    assert value in closed[name], (family.name, name, value)
                    checked += 1
    assert checked >= 50
    # Rule ids and decision labels are bounded by the policy files a process loads (other
    # tests in this process load their own): the ones this test fired are the policy's.
    for rule in ("problems.unreadable_image", "problems.malformed_record", "hate.block"):
        assert rule in closed["rule"]
        hits = REGISTRY.get_sample_value(
            "moderator_rule_hits_total", {"rule": rule, "mode": "live"}
        )
        assert hits is not None and hits >= 3


def test_every_metric_is_named_moderator_and_registered() -> None:
    registered = set(REGISTRY._collector_to_names)
    for metric in _catalogue():
        assert metric._name.startswith("moderator_"), metric._name
        assert metric in registered, metric._name
