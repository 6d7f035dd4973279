"""The Helm chart: lint, render with every CI values file, validate what it renders.

Built-in objects pass `kubernetes-validate --strict` (the library call behind the CLI)
for the oldest supported and the newest bundled Kubernetes; RayService and the
prometheus-operator kinds pass their CRD schemas; the rendered serveConfigV2 builds
the Serve app in-process (no Ray started) and the rendered settings file loads in the
worker's own settings model. Helm is located or fetched by tests/helm/helm_binary.py.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import typing
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.helm.chart_render import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    REPO,
    Manifest,
    lint,
    mask_ray_token,
    of_kind,
    one,
    ray_token,
    render,
    run_helm,
    template,
)
from tests.helm.crd_schemas import CRD_FILES, crd_errors, crd_key

pytestmark = pytest.mark.integration

MIN_KUBE_VERSION = "1.29.0"  # Chart.yaml kubeVersion
KUBE_VERSIONS = (MIN_KUBE_VERSION, kubernetes_validate.utils.latest_version())
CI_IDS = [path.name.removesuffix("-values.yaml") for path in CI_VALUES]
GATED_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
# Built-in kinds have schemas in kubernetes-validate; these are checked elsewhere.
NOT_BUILT_IN = {"KafkaTopic"} | {kind for _, kind in CRD_FILES}
MINIMAL = CHART / "ci" / "minimal-values.yaml"


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    """Each CI values file rendered once, with the CRD APIs reported as served."""
    return {name: render([path]) for name, path in zip(CI_IDS, CI_VALUES, strict=True)}


def test_ci_values_files_exist() -> None:
    assert {"minimal", "gpu-production", "external-kafka-sasl"} <= set(CI_IDS)


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_lint_strict_passes(values: Path) -> None:
    result = lint([values])
    assert result.returncode == 0, result.output
    assert "[WARNING]" not in result.output and "[ERROR]" not in result.output, result.output


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", CI_IDS)
def test_built_in_objects_pass_kubernetes_validate_strict(
    rendered: dict[str, list[Manifest]], name: str, kube_version: str
) -> None:
    failures = []
    for manifest in rendered[name]:
        if manifest["kind"] in NOT_BUILT_IN:
            continue
        try:
            kubernetes_validate.validate(manifest, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            name = f"{manifest['kind']}/{manifest['metadata']['name']}"
            failures.append(f"{name} {path}: {exc.message}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", CI_IDS)
def test_custom_resources_pass_their_crd_schemas(
    rendered: dict[str, list[Manifest]], name: str
) -> None:
    failures = [
        f"{doc['kind']}/{doc['metadata']['name']} {error}"
        for doc in rendered[name]
        if crd_key(doc)
        for error in crd_errors(doc)
    ]
    assert not failures, "\n".join(failures)


def test_every_crd_kind_is_exercised(rendered: dict[str, list[Manifest]]) -> None:
    kinds = {doc["kind"] for docs in rendered.values() for doc in docs if crd_key(doc)}
    assert kinds == {kind for _, kind in CRD_FILES}


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_crd_gated_objects_vanish_without_their_api(values: Path) -> None:
    with_api = {doc["kind"] for doc in render([values])}
    without_api = {doc["kind"] for doc in render([values], api_versions=())}
    assert {"ServiceMonitor", "PodMonitor"} <= with_api
    assert not GATED_KINDS & without_api
    assert with_api - without_api <= GATED_KINDS


@pytest.mark.parametrize("name", CI_IDS)
def test_serve_config_builds_the_classifier_app(
    rendered: dict[str, list[Manifest]], name: str
) -> None:
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import ServeDeploySchema

    from moderator.serving.classifier_deployment import LIVE_OPTIONS
    from moderator.serving_settings import BatchingConfig

    rayservice = one(rendered[name], "RayService")
    config = ServeDeploySchema.model_validate(yaml.safe_load(rayservice["spec"]["serveConfigV2"]))
    (app,) = config.applications
    module_name, _, attribute = app.import_path.partition(":")
    builder = getattr(importlib.import_module(module_name), attribute)
    args_model = typing.get_type_hints(builder)["args"]  # what Serve validates args with
    application = builder(args_model.model_validate(app.args))
    deployment = application._bound_deployment
    # The live options (tests/unit/test_serving_args.py compares them with the values).
    (override,) = app.deployments
    assert override.name == deployment.name
    live = override.model_dump(exclude_unset=True, exclude={"name"})
    assert set(live) <= set(LIVE_OPTIONS)
    deployment.options(**live)
    BatchingConfig.model_validate(override.user_config)  # what reconfigure does with it
    if override.num_replicas == "auto":
        assert isinstance(override.autoscaling_config, dict)
        AutoscalingConfig(**override.autoscaling_config)


@pytest.mark.parametrize("name", CI_IDS)
def test_settings_file_loads_in_the_worker(
    rendered: dict[str, list[Manifest]],
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moderator.config import AuthorStateConfig, load_settings

    manifests = rendered[name]
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(one(manifests, "ConfigMap", "-settings")["data"]["settings.yaml"])
    worker = one(manifests, "Deployment", "-worker")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    for variable in list(_environ_names()):
        monkeypatch.delenv(variable)
    for variable, value in _container_env(container).items():
        monkeypatch.setenv(variable, value)

    settings = load_settings(settings_file)
    assert settings.limits.image_urls.enabled == (name == "gpu-production")
    assert settings.redis.max_memory_mb == (2048 if name == "gpu-production" else None)

    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert str(settings.policy_path.parent) in mounts
    assert "subPath" not in mounts[str(settings.policy_path.parent)], "hot reload needs a dir mount"
    kafka = settings.kafka
    for tls_file in (kafka.ssl_cafile, kafka.ssl_certfile, kafka.ssl_keyfile):
        assert tls_file is None or str(tls_file.parent) in mounts
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "http-metrics"]
    assert settings.worker.metrics_port == port
    assert settings.kafka.bootstrap_servers and settings.serving.ray_address
    assert settings.kafka.compression_type == "lz4"  # kafka.producer.compressionType
    assert (settings.worker.stuck_retry_s, settings.worker.stuck_retry_max_s) == (1, 60)
    assert settings.limits.dead_letter_problems == []  # limits.deadLetterProblems
    assert {"HEIF", "AVIF"} <= set(settings.limits.allowed_image_formats)
    if settings.kafka.security_protocol.startswith("SASL_"):
        assert settings.kafka.sasl_username and settings.kafka.sasl_password
    if settings.redis.enabled:
        assert settings.redis.url is not None
    # authors.*: the chart's defaults are the settings' own.
    assert settings.author_state and settings.authors == AuthorStateConfig()


def _environ_names() -> typing.Iterator[str]:
    return (name for name in os.environ if name.startswith("MODERATOR_"))


def _container_env(container: Manifest) -> dict[str, str]:
    """The container's environment as the kubelet builds it: Secrets → placeholders."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            env[item["name"]] = f"secret-{item['valueFrom']['secretKeyRef']['key']}"
        else:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], item["value"])
    return env


@pytest.mark.parametrize("name", CI_IDS)
def test_worker_deployment_contract(rendered: dict[str, list[Manifest]], name: str) -> None:
    values = _values(CHART / "values.yaml", CHART / "ci" / f"{name}-values.yaml")
    manifests = rendered[name]
    worker = one(manifests, "Deployment", "-worker")
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert worker["spec"]["replicas"] <= values["kafka"]["topics"]["posts"]["partitions"]
    assert pod["terminationGracePeriodSeconds"] > values["worker"]["drainTimeoutSeconds"]
    assert container["command"] + container["args"][:1] == ["moderator", "worker"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["port"] == container["ports"][0]["name"]
    pdb = one(manifests, "PodDisruptionBudget")
    pod_labels = worker["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def _values(*files: Path) -> dict[str, typing.Any]:
    """Values files merged the way Helm merges them (later files win, maps merge)."""

    def merge(base: dict[str, typing.Any], override: dict[str, typing.Any]) -> None:
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value

    merged: dict[str, typing.Any] = {}
    for path in files:
        merge(merged, yaml.safe_load(path.read_text()) or {})
    return merged


@pytest.mark.parametrize("name", CI_IDS)
def test_every_container_is_non_root_with_a_read_only_root(
    rendered: dict[str, list[Manifest]], name: str
) -> None:
    for workload in of_kind(rendered[name], "Deployment"):
        _check_pod(workload["spec"]["template"]["spec"])
    for rayservice in of_kind(rendered[name], "RayService"):
        cluster = rayservice["spec"]["rayClusterConfig"]
        _check_pod(cluster["headGroupSpec"]["template"]["spec"])
        for group in cluster["workerGroupSpecs"]:
            _check_pod(group["template"]["spec"])
        if cluster.get("enableInTreeAutoscaling"):
            _check_container(cluster["autoscalerOptions"], {}, "autoscaler")


def _check_pod(pod: Manifest) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"]:
        _check_container(container, pod["securityContext"], container["name"])


def _check_container(container: Manifest, pod_context: Manifest, name: str) -> None:
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True, name
    assert context["allowPrivilegeEscalation"] is False, name
    assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, name
    assert "/tmp" in {mount["mountPath"] for mount in container["volumeMounts"]}, name


def test_gpu_worker_group_asks_for_gpus(rendered: dict[str, list[Manifest]]) -> None:
    cluster = one(rendered["gpu-production"], "RayService")["spec"]["rayClusterConfig"]
    (group,) = cluster["workerGroupSpecs"]
    pod = group["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-cuda")
    assert pod["tolerations"] and pod["nodeSelector"]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert cluster["enableInTreeAutoscaling"] is True


def test_policies_config_map_carries_the_repository_policy(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    from moderator.policy import load_policy

    data = one(rendered["minimal"], "ConfigMap", "-policies")["data"]
    assert data["default.yaml"] == (REPO / "policies" / "default.yaml").read_text()
    # Lay the files out as the worker's volume items do, then load the policy from there.
    volume = next(
        v
        for v in one(rendered["minimal"], "Deployment", "")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "policies"
    )
    for item in volume["configMap"]["items"]:
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])
    assert {i["key"] for i in volume["configMap"]["items"]} == set(data)
    load_policy(tmp_path / "default.yaml")


def test_external_ray_cluster_renders_no_rayservice() -> None:
    address = "ray://ray-head.ml.svc:10001"
    sets = ["ray.enabled=false", f"serving.rayAddress={address}", "ray.auth.existingSecret=ml-ray"]
    manifests = render([MINIMAL], sets)
    assert not of_kind(manifests, "RayService") and not of_kind(manifests, "PodMonitor")
    settings = yaml.safe_load(one(manifests, "ConfigMap", "-settings")["data"]["settings.yaml"])
    assert settings["serving"]["ray_address"] == address


def test_author_state_values_reach_the_worker_settings(tmp_path: Path) -> None:
    from moderator.config import load_settings
    from moderator.schema import Action

    values = tmp_path / "authors-values.yaml"
    values.write_text(
        "authors:\n  enabled: false\n  keyPrefix: 'mod:a:'\n  strikeActions: [block, review]\n"
        "  strikeTtlSeconds: 604800\n  flushEvery: 16\n  retryAfterSeconds: 2.5\n"
    )
    settings_file = tmp_path / "settings.yaml"
    manifests = render([MINIMAL, values])
    settings_file.write_text(one(manifests, "ConfigMap", "-settings")["data"]["settings.yaml"])
    settings = load_settings(settings_file)
    assert not settings.author_state
    authors = settings.authors
    assert (authors.key_prefix, authors.strike_actions) == ("mod:a:", {Action.BLOCK, Action.REVIEW})
    assert (authors.strike_ttl_s, authors.flush_every, authors.retry_after_s) == (604800, 16, 2.5)


def test_install_notes_render() -> None:
    """NOTES.txt (rendered only by install/upgrade); a client dry run sees no KubeRay API."""
    result = run_helm(
        "install", "mod", CHART, "--dry-run=client", "--namespace", NAMESPACE, "--values", MINIMAL
    )
    assert result.returncode == 0, result.output
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "get rayservice mod-moderator" in notes
    assert "rollout status deployment/mod-moderator-worker" in notes
    assert "did not report the ray.io/v1 API" in notes


GPU = ["ray.workers.gpusPerPod=1", "serving.classifier.numGpus=1"]
# values.schema.json: `helm template`, `helm lint` and `helm install` all refuse these.
SCHEMA_REJECTED = {
    "typo in a key": (["worker.replica=3"], "additional properties 'replica' not allowed"),
    "unknown protocol": (["kafka.securityProtocol=TLS"], "/kafka/securityProtocol"),
    "unknown codec": (["kafka.producer.compressionType=brotli"], "/kafka/producer/compressionType"),
    "negative GPUs": (["ray.workers.gpusPerPod=-1"], "/ray/workers/gpusPerPod"),
    "rayStartParams number": (["ray.head.rayStartParams.num-cpus=0"], "want string"),
    "bad Redis scheme": (["redis.url=http://redis:6379"], "/redis/url"),
    "no Redis URL": (["redis.url="], "/redis/url"),
    "bad scrape interval": (["monitoring.interval=30"], "/monitoring/interval"),
    "SASL without a Secret": (["kafka.securityProtocol=SASL_SSL"], "/kafka/sasl/existingSecret"),
    "TLS secret, no TLS": (["kafka.tls.caSecret=ca"], "/kafka/securityProtocol"),
    "GPU replicas, no GPU pods": (["serving.classifier.numGpus=1"], "/serving/classifier/numGpus"),
    "unknown device": (["serving.classifier.device=gpu"], "/serving/classifier/device"),
    "unknown precision": (["serving.classifier.precision=fp8"], "/serving/classifier/precision"),
    "CUDA, no GPU given": (["serving.classifier.device=cuda"], "/serving/classifier/numGpus"),
    "int8 on CUDA": ([*GPU, "serving.classifier.precision=int8"], "/serving/classifier/numGpus"),
    "fp16 on the CPU": (["serving.classifier.precision=fp16"], "/serving/classifier/numGpus"),
    "batching typo": (["serving.classifier.batching.size=8"], "additional properties 'size'"),
    "queue below -1": (["serving.classifier.maxQueuedRequests=-2"], "/maxQueuedRequests"),
    "no Ray at all": (["ray.enabled=false"], "/serving/rayAddress"),
    "URL fetching, no hosts": (["limits.imageUrls.enabled=true"], "/limits/imageUrls/allowedHosts"),
    "unknown strike action": (["authors.strikeActions={ban}"], "/authors/strikeActions"),
    "no strike TTL": (["authors.strikeTtlSeconds=0"], "/authors/strikeTtlSeconds"),
}
# Template checks (`fail`): template and install refuse; lint only logs the message.
TEMPLATE_REJECTED = {
    "no bootstrap servers": (["kafka.bootstrapServers="], "kafka.bootstrapServers is required"),
    "too many workers": (["worker.replicas=13"], "exceeds kafka.topics.posts.partitions"),
    "min above max": (["ray.workers.minReplicas=5"], "minReplicas exceeds ray.workers.maxReplicas"),
    "policy file missing": (["policies.file=strict.yaml"], "strict.yaml"),
    "batch above in-flight": (
        ["serving.classifier.batching.maxBatchSize=16"],
        "maxOngoingRequests (8) is below batching.maxBatchSize (16)",
    ),
    "external Ray, no token Secret": (
        ["ray.enabled=false", "serving.rayAddress=ray://ray-head.ml.svc:10001"],
        "ray.auth.existingSecret is required with ray.enabled=false",
    ),
}


@pytest.mark.parametrize("sets, message", SCHEMA_REJECTED.values(), ids=SCHEMA_REJECTED.keys())
def test_schema_rejects_mistakes(sets: list[str], message: str) -> None:
    for result in (template([MINIMAL], sets), lint([MINIMAL], sets)):
        assert result.returncode != 0, f"accepted {sets}"
        assert message in result.output, result.output


@pytest.mark.parametrize("sets, message", TEMPLATE_REJECTED.values(), ids=TEMPLATE_REJECTED.keys())
def test_template_checks_reject_mistakes(sets: list[str], message: str) -> None:
    result = template([MINIMAL], sets)
    assert result.returncode != 0, f"accepted {sets}"
    assert message in result.output, result.output
    assert message in lint([MINIMAL], sets).output


def test_dashboards_and_alert_files_are_picked_up(tmp_path: Path) -> None:
    chart = tmp_path / "moderator"
    shutil.copytree(CHART, chart)  # symlinks resolved: a self-contained copy
    dashboard = {"title": "Moderator sample", "panels": [], "schemaVersion": 39}
    (chart / "dashboards" / "sample_overview.json").write_text(json.dumps(dashboard))
    rules = {"groups": [{"name": "sample", "rules": [{"alert": "X", "expr": "vector(1) > 2"}]}]}
    (chart / "alerts" / "sample.yaml").write_text(yaml.safe_dump(rules))

    manifests = render([MINIMAL], chart=chart)

    config_map = one(manifests, "ConfigMap", "-dashboard-sample-overview")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["sample_overview.json"]) == dashboard
    rule = one(manifests, "PrometheusRule")
    every_file = sorted((chart / "alerts").glob("*.yaml"))  # Files.Glob order: by path
    expected = [g for path in every_file for g in yaml.safe_load(path.read_text())["groups"]]
    assert rule["spec"]["groups"] == expected and rules["groups"][0] in expected
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not crd_errors(rule)

    (chart / "dashboards" / "broken.json").write_text("{not json")
    assert "broken.json is not valid JSON" in template([MINIMAL], chart=chart).output


def test_empty_dashboard_and_alert_dirs_render_nothing(tmp_path: Path) -> None:
    chart = tmp_path / "moderator"
    shutil.copytree(CHART, chart)
    for shipped in [*(chart / "dashboards").glob("*.json"), *(chart / "alerts").glob("*.yaml")]:
        shipped.unlink()
    manifests = render([MINIMAL], chart=chart)
    names = [doc["metadata"]["name"] for doc in of_kind(manifests, "ConfigMap")]
    assert not [name for name in names if "-dashboard-" in name]
    assert not of_kind(manifests, "PrometheusRule")


@pytest.mark.parametrize(
    "source, copy_dir, pattern",
    [("deploy/grafana", "dashboards", "*.json"), ("deploy/prometheus", "alerts", "*.yaml")],
)
def test_chart_copies_match_their_sources(source: str, copy_dir: str, pattern: str) -> None:
    """Helm reads only the chart directory: deploy/ files reach it as symlinks or copies."""
    for original in sorted((REPO / source).glob(pattern)):
        copy = CHART / copy_dir / original.name
        fix = f"ln -s ../../../{source}/{original.name} helm/moderator/{copy_dir}/"
        assert copy.exists(), f"{copy} is missing: {fix}"
        assert copy.read_bytes() == original.read_bytes(), f"{copy} is stale: {fix}"


def test_chart_ray_version_matches_the_image() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    (pinned,) = re.findall(r"^ARG RAY_VERSION=(\S+)$", dockerfile, flags=re.MULTILINE)
    assert values["ray"]["version"] == pinned


def test_every_value_is_documented() -> None:
    """Every leaf of values.yaml has a comment above it or above one of its parents."""
    undocumented = []
    ancestors: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    previous = ""
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), 1):
        key = re.match(r"^( *)([A-Za-z][\w.-]*):(.*)$", line)
        if key:
            indent, documented = len(key.group(1)), previous.lstrip().startswith("#")
            while ancestors and ancestors[-1][0] >= indent:
                ancestors.pop()
            inherited = documented or any(doc for _, doc in ancestors)
            if key.group(3).strip() and not inherited:
                undocumented.append(f"values.yaml:{number}: {key.group(2)}")
            ancestors.append((indent, documented))
        if line.strip():
            previous = line
    assert not undocumented, "\n".join(undocumented)


def test_packaged_chart_renders_the_same(tmp_path: Path) -> None:
    """`helm package` stores symlinked files' contents and leaves the READMEs out."""
    result = run_helm("package", CHART, "--destination", tmp_path)
    assert result.returncode == 0, result.output
    (archive,) = tmp_path.glob("moderator-*.tgz")
    packaged, unpacked = render([MINIMAL], chart=archive), render([MINIMAL])
    # Each render draws a fresh Ray token (no cluster to look the Secret up in): compare
    # everything else, and that both drew one.
    assert len(ray_token(packaged)) == len(ray_token(unpacked)) == 64
    assert mask_ray_token(packaged) == mask_ray_token(unpacked)
