"""The metric catalogue: every label is a bounded dimension, never user data."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from moderator import metrics

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


def test_every_label_is_bounded_and_none_carries_user_data() -> None:
    found = _catalogue()
    assert len(found) >= 15
    for metric in found:
        labels = set(metric._labelnames)
        assert labels <= BOUNDED_LABELS, (metric._name, labels - BOUNDED_LABELS)
        assert not labels & {"caption", "author", "author_id", "post_id", "user", "text"}


def test_every_metric_is_named_moderator_and_registered() -> None:
    registered = set(REGISTRY._collector_to_names)
    for metric in _catalogue():
        assert metric._name.startswith("moderator_"), metric._name
        assert metric in registered, metric._name
