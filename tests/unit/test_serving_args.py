"""The Classifier app's arguments (moderator.serving_settings.ClassifierArgs) are defined once
and reach the deployment unchanged from a settings file, the environment and the Helm values.

The Helm tests render the chart (helm binary, tests/helm/helm_binary.py) and validate the
rendered serveConfigV2 the way Serve does: `args` with the app builder's own type.
"""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from pydantic import ValidationError
from ray.serve.deployment import Deployment
from ray.serve.schema import ServeDeploySchema

from moderator.config import ConfigError, Settings, load_settings
from moderator.model import InferenceOptions, ModelLoadError
from moderator.serving import classifier_deployment
from moderator.serving.classifier_deployment import (
    LIVE_OPTIONS,
    build_app,
    deployment_options,
    inference_options,
)
from moderator.serving_settings import PRECISIONS, ClassifierArgs, Device
from tests.helm.chart_render import CHART, one, render

# Every ClassifierArgs field away from its default (test_every_field_is_exercised checks).
EVERY_FIELD: dict[str, Any] = {
    "checkpoint": "/models/v3",
    "device": "cuda:1",
    "precision": "bf16",
    "tf32": True,
    "compile": True,
    "torch_threads": 3,
    "num_cpus": 2.5,
    "num_gpus": 0.5,
    "recent_embeddings": 100,
    "recent_embeddings_mib": 64.5,
    "semantic": {"banks": ["/banks/known_memes"], "exact_max_entries": 5000, "nprobe": 8},
    "num_replicas": 3,
    "max_ongoing_requests": 32,
    "max_queued_requests": 100,
    "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.01},
    "autoscaling": {
        "min_replicas": 2,
        "max_replicas": 6,
        "target_ongoing_requests": 3.0,
        "upscale_delay_s": 5.0,
        "downscale_delay_s": 60.0,
    },
}
# The same, as Helm values (serving.classifier.* and serving.autoscaling.*).
HELM_VALUES: dict[str, Any] = {
    "serving": {
        "classifier": {
            "checkpoint": "/models/v3",
            "device": "cuda:1",
            "precision": "bf16",
            "tf32": True,
            "compile": True,
            "torchThreads": 3,
            "numCpus": 2.5,
            "numGpus": 0.5,
            "recentEmbeddings": 100,
            "recentEmbeddingsMiB": 64.5,
            "semantic": {"banks": ["/banks/known_memes"], "exactMaxEntries": 5000, "nprobe": 8},
            "numReplicas": 3,
            "maxOngoingRequests": 32,
            "maxQueuedRequests": 100,
            "batching": {"maxBatchSize": 16, "batchWaitTimeoutSeconds": 0.01},
        },
        "autoscaling": {
            "enabled": True,
            "minReplicas": 2,
            "maxReplicas": 6,
            "targetOngoingRequests": 3,
            "upscaleDelaySeconds": 5,
            "downscaleDelaySeconds": 60,
        },
    },
    "ray": {"workers": {"gpusPerPod": 1}},
}
# Fields that reach a replica as the app's args; the others are Serve options.
SERVE_OPTION_FIELDS = {
    "num_replicas",
    "max_ongoing_requests",
    "max_queued_requests",
    "batching",
    "autoscaling",
}
REPLICA_FIELDS = set(ClassifierArgs.model_fields) - SERVE_OPTION_FIELDS


def _deployment(args: ClassifierArgs) -> Deployment:
    return build_app(args)._bound_deployment


def _assert_deployed_as(args: ClassifierArgs, expected: dict[str, Any]) -> None:
    """build_app(args) is the Classifier deployment with the options in `expected`."""
    deployment = _deployment(args)
    config = deployment._deployment_config
    assert deployment.name == "Classifier"
    assert deployment.init_args == (args,)  # the replica gets the one model, whole
    assert deployment.ray_actor_options == {"num_cpus": 2.5, "num_gpus": 0.5}
    assert config.max_ongoing_requests == 32
    assert config.max_queued_requests == 100
    assert config.user_config == expected["batching"]
    if expected["autoscaling"] is None:
        assert (config.num_replicas, config.autoscaling_config) == (3, None)
    else:
        autoscaling = config.autoscaling_config
        assert autoscaling is not None
        assert (
            autoscaling.model_dump(include=set(expected["autoscaling"]))
            == (expected["autoscaling"])
        )


def test_every_field_is_exercised() -> None:
    args = ClassifierArgs.model_validate(EVERY_FIELD)
    for name, field in ClassifierArgs.model_fields.items():
        assert getattr(args, name) != field.get_default(call_default_factory=True), name
    assert set(EVERY_FIELD) == set(ClassifierArgs.model_fields)


@pytest.mark.parametrize("autoscaling", [True, False], ids=["autoscaling", "fixed replicas"])
def test_settings_file_reaches_the_deployment(tmp_path: Path, autoscaling: bool) -> None:
    fields = EVERY_FIELD | ({} if autoscaling else {"autoscaling": None})
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"serving": {"classifier": fields}}))
    args = load_settings(path).serving.classifier
    assert args == ClassifierArgs.model_validate(fields)
    assert args.checkpoint == Path("/models/v3")
    _assert_deployed_as(args, fields)


def _environment(fields: dict[str, Any], prefix: str) -> dict[str, str]:
    """MODERATOR_SERVING__CLASSIFIER__... variables, nested levels joined by __."""
    out: dict[str, str] = {}
    for name, value in fields.items():
        key = f"{prefix}__{name.upper()}"
        if isinstance(value, dict):
            out |= _environment(value, key)
        elif isinstance(value, list):
            out[key] = json.dumps(value)  # pydantic-settings reads a list as JSON
        else:
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def test_environment_reaches_the_deployment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [n for n in os.environ if n.startswith("MODERATOR_")]:
        monkeypatch.delenv(name)
    for name, value in _environment(EVERY_FIELD, "MODERATOR_SERVING__CLASSIFIER").items():
        monkeypatch.setenv(name, value)
    args = Settings().serving.classifier
    assert args == ClassifierArgs.model_validate(EVERY_FIELD)
    _assert_deployed_as(args, EVERY_FIELD)
    # Over a settings file, the environment wins field by field.
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"serving": {"classifier": {"torch_threads": 7}}}))
    monkeypatch.delenv("MODERATOR_SERVING__CLASSIFIER__TORCH_THREADS")
    monkeypatch.setenv("MODERATOR_SERVING__CLASSIFIER__BATCHING__MAX_BATCH_SIZE", "8")
    merged = load_settings(path).serving.classifier
    assert (merged.torch_threads, merged.batching.max_batch_size) == (7, 8)


@pytest.mark.parametrize(
    "key, moved_to",
    [
        ("torch_threads", "serving.classifier.torch_threads"),
        ("max_batch_size", "serving.classifier.batching.max_batch_size"),
    ],
)
def test_keys_from_before_serving_classifier_say_where_they_went(
    tmp_path: Path, key: str, moved_to: str
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"serving": {key: 4}}))
    with pytest.raises(ConfigError, match=f"serving.{key} is now {moved_to}"):
        load_settings(path)


def test_replica_inference_options() -> None:
    args = ClassifierArgs.model_validate(EVERY_FIELD | {"device": "cpu"})
    assert inference_options(args) == InferenceOptions(
        precision="bf16", device="cpu", tf32=True, compile=True
    )
    # auto without a GPU given is the CPU, even where torch sees one.
    assert inference_options(ClassifierArgs(device="auto", num_gpus=0)).device == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_replica_asked_for_cuda_without_one_fails_at_start() -> None:
    args = ClassifierArgs(device="cuda", num_gpus=1)
    with pytest.raises(ModelLoadError, match="no CUDA device"):
        classifier_deployment.ClassifierDeployment.func_or_class(args)


REFUSED = {
    "batch above in-flight": (
        {"max_ongoing_requests": 2, "batching": {"max_batch_size": 4}},
        "silently caps",
    ),
    "CUDA, no GPU given": ({"device": "cuda:0"}, "needs num_gpus > 0: Ray hides every GPU"),
    "int8 on CUDA": (
        {"device": "cuda", "num_gpus": 1, "precision": "int8"},
        "int8 runs on the CPU only",
    ),
    "int8, auto with a GPU": ({"num_gpus": 1, "precision": "int8"}, "int8 runs on the CPU only"),
    "fp16 on the CPU": ({"device": "cpu", "precision": "fp16"}, "fp16 needs CUDA"),
    "fp16, auto without a GPU": ({"precision": "fp16"}, "fp16 needs CUDA"),
    "unknown device": ({"device": "gpu"}, "should match pattern"),
    "unknown precision": ({"precision": "fp8"}, "'fp32', 'bf16', 'fp16' or 'int8'"),
    "autoscaling bounds": (
        {"autoscaling": {"min_replicas": 5, "max_replicas": 2}},
        "min_replicas exceeds max_replicas",
    ),
    "unknown key": ({"batching": {"max_batch": 3}}, "Extra inputs are not permitted"),
}


@pytest.mark.parametrize("fields, message", REFUSED.values(), ids=REFUSED.keys())
def test_inconsistent_arguments_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ClassifierArgs.model_validate(fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"device": "cuda:1", "num_gpus": 0.25, "precision": "fp16", "tf32": True},
        {"num_gpus": 1, "precision": "bf16"},
        {"device": "cpu", "num_gpus": 1, "precision": "int8"},  # a GPU given, not used
        {"precision": "int8"},
    ],
)
def test_consistent_arguments_pass(fields: dict[str, Any]) -> None:
    ClassifierArgs.model_validate(fields)


@pytest.mark.integration
@pytest.mark.parametrize("autoscaling", [True, False], ids=["autoscaling", "fixed replicas"])
def test_helm_values_reach_the_deployment(tmp_path: Path, autoscaling: bool) -> None:
    """Rendered serveConfigV2: `args` (validated like Serve does, with build_app's type) hold
    the fields a replica reads at start; the deployment override holds the options Serve
    applies live; together they are the deployment the same settings give."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(HELM_VALUES))
    sets = [f"serving.autoscaling.enabled={str(autoscaling).lower()}"]
    rayservice = one(render([CHART / "ci" / "minimal-values.yaml", values], sets), "RayService")
    config = ServeDeploySchema.model_validate(yaml.safe_load(rayservice["spec"]["serveConfigV2"]))
    (app,) = config.applications
    assert app.import_path == "moderator.serving.classifier_deployment:build_app"
    args_type = typing.get_type_hints(build_app)["args"]
    assert args_type is ClassifierArgs
    args = args_type.model_validate(app.args)
    expected = ClassifierArgs.model_validate(
        EVERY_FIELD | ({} if autoscaling else {"autoscaling": None})
    )

    assert set(app.args) == REPLICA_FIELDS
    assert args.model_dump(include=REPLICA_FIELDS) == expected.model_dump(include=REPLICA_FIELDS)
    (override,) = app.deployments
    assert override.name == "Classifier"
    live = override.model_dump(exclude_unset=True, exclude={"name"})
    assert set(live) <= set(LIVE_OPTIONS)
    # What Serve runs: build_app's options, the override's replacing theirs.
    assert deployment_options(args) | live == deployment_options(expected)
    # The override is one Serve accepts for this deployment.
    build_app(args)._bound_deployment.options(**live)


def test_chart_schema_allows_exactly_the_settings_precisions_and_devices() -> None:
    """values.schema.json spells the precision enum and device pattern again (JSON Schema
    cannot import them): they must stay what moderator.config declares."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    classifier = schema["properties"]["serving"]["properties"]["classifier"]["properties"]
    assert classifier["precision"]["enum"] == list(PRECISIONS)
    device_pattern = typing.get_args(Device)[1].pattern
    assert classifier["device"]["pattern"] == device_pattern
