"""Run helm on the chart and parse what it renders."""

from __future__ import annotations

import base64
import copy
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helm.helm_binary import helm_binary

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "moderator"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "mod"
NAMESPACE = "moderation"
# What the chart's CRD-gated templates look for (prometheus-operator) and KubeRay's API.
CRD_API_VERSIONS = ("monitoring.coreos.com/v1", "ray.io/v1")

Manifest = dict[str, Any]


@dataclass(frozen=True)
class HelmResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_helm(*args: str | Path) -> HelmResult:
    command = [str(helm_binary()), *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    return HelmResult(done.returncode, done.stdout, done.stderr)


def value_args(values_files: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[str]:
    args: list[str] = []
    for path in values_files:
        args += ["--values", str(path)]
    for assignment in sets:
        args += ["--set", assignment]
    return args


def template(
    values_files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    api_versions: Sequence[str] = (),
    chart: Path = CHART,
) -> HelmResult:
    """`helm template` with the release name and namespace the tests use."""
    args: list[str | Path] = ["template", RELEASE, chart, "--namespace", NAMESPACE]
    args += value_args(values_files, sets)
    for api_version in api_versions:
        args += ["--api-versions", api_version]
    return run_helm(*args)


def render(
    values_files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    api_versions: Sequence[str] = CRD_API_VERSIONS,
    chart: Path = CHART,
) -> list[Manifest]:
    """The rendered objects; fails the test with helm's message if rendering fails."""
    result = template(values_files, sets, api_versions, chart)
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.output}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def lint(values_files: Sequence[Path] = (), sets: Sequence[str] = ()) -> HelmResult:
    return run_helm("lint", "--strict", CHART, *value_args(values_files, sets))


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in manifests if doc["kind"] == kind]


def one(manifests: list[Manifest], kind: str, name_suffix: str = "") -> Manifest:
    found = [m for m in of_kind(manifests, kind) if m["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} named *{name_suffix}, got {len(found)}"
    return found[0]


def ray_auth_secret(manifests: list[Manifest]) -> Manifest:
    """The Secret the chart creates for the Ray auth token."""
    return one(manifests, "Secret", "-ray-auth")


def ray_token(manifests: list[Manifest]) -> str:
    """The Ray auth token of the chart's Secret, decoded."""
    return base64.b64decode(ray_auth_secret(manifests)["data"]["auth_token"]).decode()


def mask_ray_token(manifests: list[Manifest]) -> list[Manifest]:
    """A copy with the chart's random Ray token replaced, so two renders can be compared."""
    masked = copy.deepcopy(manifests)
    for secret in of_kind(masked, "Secret"):
        if secret["metadata"]["name"].endswith("-ray-auth"):
            secret["data"]["auth_token"] = "<masked>"
    return masked
