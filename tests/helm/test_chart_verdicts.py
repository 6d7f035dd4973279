"""The chart's verdict consumer (verdicts.enabled): rendered, validated, and its settings load.

Off by default, so the CI values files never render it; these tests turn it on over the
minimal values and check what the other chart tests check for the worker: built-in objects
pass `kubernetes-validate --strict`, the PodMonitor its CRD schema, and the settings file
plus the container's environment load in `moderator verdicts`' own settings model.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import kubernetes_validate
import pytest

from tests.helm.chart_render import CHART, Manifest, lint, of_kind, one, render, template
from tests.helm.crd_schemas import crd_errors

pytestmark = pytest.mark.integration

MINIMAL = CHART / "ci" / "minimal-values.yaml"
KUBE_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
ENABLED = [
    "verdicts.enabled=true",
    "verdicts.trainingRows.existingClaim=reviewed-rows",
    "kafka.strimzi.createTopics=true",
    "kafka.strimzi.clusterName=my-cluster",
]


@pytest.fixture(scope="module")
def manifests() -> list[Manifest]:
    return render([MINIMAL], ENABLED)


def _container(manifests: list[Manifest]) -> Manifest:
    pod = one(manifests, "Deployment", "-verdicts")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert isinstance(container, dict)
    return container


def test_off_by_default_nothing_is_rendered() -> None:
    manifests = render([MINIMAL])
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in manifests}
    assert not [name for kind, name in names if name.endswith("-verdicts")]
    assert not [doc for doc in of_kind(manifests, "KafkaTopic") if "verdicts" in str(doc)]


def test_lint_strict_passes_with_the_verdict_consumer() -> None:
    result = lint([MINIMAL], ENABLED)
    assert result.returncode == 0, result.output
    assert "[WARNING]" not in result.output and "[ERROR]" not in result.output, result.output


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_its_objects_pass_kubernetes_validate_strict(
    manifests: list[Manifest], kube_version: str
) -> None:
    ours = [doc for doc in manifests if doc["metadata"]["name"].endswith("-verdicts")]
    assert {doc["kind"] for doc in ours} == {"Deployment", "NetworkPolicy", "PodMonitor"}
    for doc in ours:
        if doc["kind"] == "PodMonitor":
            assert crd_errors(doc) == []
        else:
            kubernetes_validate.validate(doc, kube_version, strict=True)


def test_the_topics_are_declared(manifests: list[Manifest]) -> None:
    topics = {doc["spec"]["topicName"] for doc in of_kind(manifests, "KafkaTopic")}
    assert {"verdicts", "verdicts.dlq"} <= topics


def test_settings_file_and_environment_load_in_the_verdict_consumer(
    manifests: list[Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moderator.config import load_settings

    container = _container(manifests)
    assert container["command"] + container["args"][:1] == ["moderator", "verdicts"]
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(one(manifests, "ConfigMap", "-settings")["data"]["settings.yaml"])
    for variable in [name for name in os.environ if name.startswith("MODERATOR_")]:
        monkeypatch.delenv(variable)
    env: dict[str, str] = {}
    for item in container["env"]:
        if "valueFrom" in item:
            env[item["name"]] = f"secret-{item['valueFrom']['secretKeyRef']['key']}"
        else:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], item["value"])
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)

    settings = load_settings(settings_file)

    assert settings.kafka.verdicts_topic == "verdicts"
    assert settings.verdicts.dlq_topic == "verdicts.dlq"
    assert settings.verdicts.group_id == "moderator-verdicts" != settings.kafka.group_id
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "http-metrics"]
    assert settings.verdicts.metrics_port == port
    assert settings.redis.url is not None
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    rows = settings.verdicts.training_rows_path
    assert rows is not None and rows.name == "verdicts.jsonl" and str(rows.parent) in mounts
    assert str(settings.policy_path.parent) in mounts
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/tmp" in mounts


def test_without_a_claim_no_rows_are_written() -> None:
    container = _container(render([MINIMAL], ["verdicts.enabled=true"]))
    names = {item["name"] for item in container["env"]}
    assert "MODERATOR_VERDICTS__TRAINING_ROWS_PATH" not in names


@pytest.mark.parametrize(
    "sets, message",
    [
        (["verdicts.replicas=4"], "verdicts.replicas (4) exceeds kafka.topics.verdicts.partitions"),
        (["redis.enabled=false"], "verdicts.enabled needs Redis"),
        (["verdicts.trainingRows.fileName=../x"], "fileName"),
    ],
    ids=["replicas-above-partitions", "no-redis", "file-name-with-a-path"],
)
def test_mistakes_are_rejected(sets: list[str], message: str) -> None:
    result = template([MINIMAL], ["verdicts.enabled=true", *sets])
    assert result.returncode != 0, f"accepted {sets}"
    assert message in result.output, result.output
