"""The chart's side of Ray token authentication and of keeping Ray reachable in-cluster only.

The token lives in one Secret (the chart's "<fullname>-ray-auth" or ray.auth.existingSecret)
under "auth_token": KubeRay reads it through rayClusterConfig.authOptions.secretName, the
moderator workers through a secretKeyRef. ray.auth.tokenRevision restarts every pod that read
it. The NetworkPolicy admits the dashboard/jobs API only from the KubeRay operator's pods in
its namespace, and nothing exposes Ray outside the cluster.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.chart_render import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    Manifest,
    lint,
    of_kind,
    one,
    ray_auth_secret,
    ray_token,
    render,
    run_helm,
    template,
    value_args,
)
from tests.helm.crd_schemas import crd_errors

pytestmark = pytest.mark.integration

MINIMAL = CHART / "ci" / "minimal-values.yaml"
CI_IDS = [path.name.removesuffix("-values.yaml") for path in CI_VALUES]
CHART_SECRET = "mod-moderator-ray-auth"  # release "mod": <fullname>-ray-auth
TOKEN_ENV = "MODERATOR_SERVING__RAY_AUTH_TOKEN"
REVISION_ANNOTATION = "moderator/ray-auth-revision"
EXTERNAL_RAY = ["ray.enabled=false", "serving.rayAddress=ray://ray-head.ml.svc:10001"]
OPERATOR_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kuberay-system"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}},
}


def _cluster(manifests: list[Manifest]) -> Manifest:
    cluster: Manifest = one(manifests, "RayService")["spec"]["rayClusterConfig"]
    return cluster


def _worker_container(manifests: list[Manifest]) -> Manifest:
    container: Manifest = one(manifests, "Deployment", "-worker")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def _token_env(manifests: list[Manifest]) -> list[Manifest]:
    return [e for e in _worker_container(manifests).get("env", []) if e["name"] == TOKEN_ENV]


def _settings(manifests: list[Manifest]) -> dict[str, Any]:
    text = one(manifests, "ConfigMap", "-settings")["data"]["settings.yaml"]
    settings: dict[str, Any] = yaml.safe_load(text)
    return settings


def _assert_wired_to(manifests: list[Manifest], secret: str) -> None:
    """KubeRay and the workers read the token from the same Secret and key."""
    assert _cluster(manifests)["authOptions"] == {"mode": "token", "secretName": secret}
    (env,) = _token_env(manifests)
    assert env["valueFrom"] == {"secretKeyRef": {"name": secret, "key": "auth_token"}}
    assert _settings(manifests)["serving"]["ray_auth_mode"] == "token"
    assert not crd_errors(one(manifests, "RayService"))


def test_chart_creates_the_token_secret_and_wires_both_sides_to_it() -> None:
    manifests = render([MINIMAL])
    secret = ray_auth_secret(manifests)
    assert secret["metadata"]["name"] == CHART_SECRET
    assert secret["type"] == "Opaque" and set(secret["data"]) == {"auth_token"}
    token = ray_token(manifests)
    assert re.fullmatch(r"[A-Za-z0-9]{64}", token), token
    _assert_wired_to(manifests, CHART_SECRET)
    # The token is in the Secret and nowhere else (no ConfigMap, env value, annotation).
    others = [doc for doc in manifests if doc is not secret]
    text = yaml.safe_dump_all(others)
    assert token not in text and secret["data"]["auth_token"] not in text


def test_each_render_draws_its_own_token() -> None:
    """Without a cluster to look the Secret up in (helm template), a token is drawn afresh."""
    assert ray_token(render([MINIMAL])) != ray_token(render([MINIMAL]))


def test_existing_secret_is_used_and_no_secret_is_rendered() -> None:
    manifests = render([MINIMAL], ["ray.auth.existingSecret=ray-token"])
    assert not of_kind(manifests, "Secret")
    _assert_wired_to(manifests, "ray-token")


def test_disabled_mode_renders_no_secret_and_no_token() -> None:
    manifests = render([MINIMAL], ["ray.auth.mode=disabled"])
    assert _cluster(manifests)["authOptions"] == {"mode": "disabled"}
    assert not of_kind(manifests, "Secret")
    assert not _token_env(manifests)
    assert _settings(manifests)["serving"]["ray_auth_mode"] == "disabled"
    assert not crd_errors(one(manifests, "RayService"))


def test_external_ray_cluster_uses_the_named_secret() -> None:
    manifests = render([MINIMAL], [*EXTERNAL_RAY, "ray.auth.existingSecret=ml-ray"])
    assert not of_kind(manifests, "RayService") and not of_kind(manifests, "Secret")
    (env,) = _token_env(manifests)
    assert env["valueFrom"] == {"secretKeyRef": {"name": "ml-ray", "key": "auth_token"}}
    assert _settings(manifests)["serving"]["ray_auth_mode"] == "token"

    untokened = render([MINIMAL], [*EXTERNAL_RAY, "ray.auth.mode=disabled"])
    assert not _token_env(untokened) and not of_kind(untokened, "Secret")


def _pod_annotations(manifests: list[Manifest]) -> list[dict[str, str]]:
    """Annotations of the Ray head, each Ray worker group and the moderator worker pods."""
    cluster = _cluster(manifests)
    templates = [
        cluster["headGroupSpec"]["template"],
        *(group["template"] for group in cluster["workerGroupSpecs"]),
        one(manifests, "Deployment", "-worker")["spec"]["template"],
    ]
    return [t["metadata"].get("annotations", {}) for t in templates]


@pytest.mark.parametrize("revision", ["2026-08-01", "7"])
def test_token_revision_reaches_every_pod_that_reads_the_token(revision: str) -> None:
    manifests = render([MINIMAL], [f"ray.auth.tokenRevision={revision}"])
    annotations = _pod_annotations(manifests)
    assert len(annotations) == 3
    assert all(a.get(REVISION_ANNOTATION) == revision for a in annotations), annotations
    assert not crd_errors(one(manifests, "RayService"))


def test_no_token_revision_adds_no_annotation() -> None:
    assert all(REVISION_ANNOTATION not in a for a in _pod_annotations(render([MINIMAL])))


def _ray_policy(manifests: list[Manifest]) -> Manifest:
    return one(manifests, "NetworkPolicy", "-ray")


def _rule_with_port(policy: Manifest, port: int) -> Manifest:
    (rule,) = [r for r in policy["spec"]["ingress"] if port in _ports(r)]
    return rule


def _ports(rule: Manifest) -> set[int | str]:
    return {p["port"] for p in rule.get("ports", [])}


def test_dashboard_api_admits_only_the_operator_namespace_and_pods() -> None:
    rule = _rule_with_port(_ray_policy(render([MINIMAL])), 8265)
    assert _ports(rule) == {8265, 52365}
    assert rule["from"] == [OPERATOR_PEER]

    custom = render(
        [MINIMAL],
        [
            "networkPolicy.kuberayOperator.namespace=ray-operators",
            "networkPolicy.kuberayOperator.podLabels.app=kuberay",
        ],
    )
    (peer,) = _rule_with_port(_ray_policy(custom), 8265)["from"]
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "ray-operators"}
    }
    assert peer["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "kuberay-operator", "app": "kuberay"}
    }


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_ray_ingress_rules_name_their_peers(values: Path) -> None:
    """Ray Client only from this release's workers, the rest only from its own Ray pods;
    only the metrics ports may be open to any source, and no peer is "every namespace"."""
    manifests = render([values])
    policy = _ray_policy(manifests)
    ray_pods = policy["spec"]["podSelector"]
    workers = one(manifests, "Deployment", "-worker")["spec"]["selector"]
    client = _rule_with_port(policy, 10001)
    assert _ports(client) == {10001} and client["from"] == [{"podSelector": workers}]
    (unported,) = [r for r in policy["spec"]["ingress"] if not r.get("ports")]
    assert unported["from"] == [{"podSelector": ray_pods}]
    for doc in of_kind(manifests, "NetworkPolicy"):
        for rule in doc["spec"]["ingress"]:
            if "from" not in rule:
                assert _ports(rule) <= {8080, "http-metrics"}, (doc["metadata"]["name"], rule)
            for peer in rule.get("from", []):
                if "namespaceSelector" in peer:
                    assert _selects_some(peer["namespaceSelector"]), (doc["metadata"], peer)


def _selects_some(selector: Manifest) -> bool:
    """False for {} and other selectors that match every object."""
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


@pytest.mark.parametrize("sets", [[], ["ray.auth.mode=disabled"]], ids=["token", "disabled"])
@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_nothing_exposes_ray_outside_the_cluster(values: Path, sets: list[str]) -> None:
    manifests = render([values], sets)
    assert not of_kind(manifests, "Ingress")
    for service in of_kind(manifests, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]
    rayservice = one(manifests, "RayService")
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"
    assert not head.get("enableIngress") and "ingressOptions" not in head
    assert "headService" not in head and "serveService" not in rayservice["spec"]
    assert not crd_errors(rayservice)


def _install_dry_run(*sets: str) -> tuple[str, list[Manifest]]:
    args: list[str | Path] = ["install", "mod", CHART, "--dry-run=client", "--values", MINIMAL]
    result = run_helm(*args, "--namespace", NAMESPACE, *value_args(sets=sets))
    assert result.returncode == 0, result.output
    manifest_text, notes = result.stdout.split("NOTES:", 1)
    documents = manifest_text.split("MANIFEST:", 1)[1]
    return notes, [doc for doc in yaml.safe_load_all(documents) if doc]


def test_install_notes_name_the_secret_never_the_token() -> None:
    notes, manifests = _install_dry_run()
    assert f'Ray token authentication is on: the token is in Secret "{CHART_SECRET}"' in notes
    encoded = ray_auth_secret(manifests)["data"]["auth_token"]
    assert base64.b64decode(encoded).decode() not in notes and encoded not in notes
    assert "DISABLED" not in notes

    disabled_notes, _ = _install_dry_run("ray.auth.mode=disabled")
    assert "WARNING: Ray token authentication is DISABLED" in disabled_notes


SCHEMA_REJECTED = {
    "unknown mode": (["ray.auth.mode=none"], "/ray/auth/mode"),
    "bad Secret name": (["ray.auth.existingSecret=Ray_Token"], "/ray/auth/existingSecret"),
    "old operator peers": (
        ["networkPolicy.kuberayOperatorFrom[0].podSelector.matchLabels.a=b"],
        "additional properties 'kuberayOperatorFrom' not allowed",
    ),
    "no operator namespace": (
        ["networkPolicy.kuberayOperator.namespace="],
        "/networkPolicy/kuberayOperator/namespace",
    ),
    "no operator labels": (
        ["networkPolicy.kuberayOperator.podLabels=null"],
        "/networkPolicy/kuberayOperator",
    ),
}


@pytest.mark.parametrize("sets, message", SCHEMA_REJECTED.values(), ids=SCHEMA_REJECTED.keys())
def test_schema_rejects_ray_auth_and_operator_mistakes(sets: list[str], message: str) -> None:
    for result in (template([MINIMAL], sets), lint([MINIMAL], sets)):
        assert result.returncode != 0, f"accepted {sets}"
        assert message in result.output, result.output
