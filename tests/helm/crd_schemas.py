"""Validate rendered custom resources against the CRDs' OpenAPI v3 schemas, offline.

The schemas come from ../shared/k8s-crds (KubeRay and prometheus-operator CRDs). The
API server prunes unknown fields of a structural schema silently, so a typo in a
template would vanish on install: here every object schema that lists its properties
and does not preserve unknown fields also rejects extra ones, the way
`kubectl apply --validate=strict` does.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRD_DIR = Path(__file__).parents[2].parent / "shared" / "k8s-crds"
CRD_FILES = {
    ("ray.io", "RayService"): "ray.io_rayservices.yaml",
    ("monitoring.coreos.com", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def crd_key(manifest: dict[str, Any]) -> tuple[str, str] | None:
    """(group, kind) when the manifest is one of the CRD kinds checked here."""
    group = manifest["apiVersion"].split("/")[0]
    key = (group, manifest["kind"])
    return key if key in CRD_FILES else None


@cache
def _validator(group: str, kind: str, version: str) -> jsonschema.protocols.Validator:
    path = CRD_DIR / CRD_FILES[(group, kind)]
    crd = yaml.load(path.read_text(), Loader=_Loader)
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    if version not in served:
        raise AssertionError(f"{path.name} does not serve {group}/{version} (has {sorted(served)})")
    schema = _strict(copy.deepcopy(served[version]["schema"]["openAPIV3Schema"]))
    return jsonschema.Draft7Validator(schema)


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for item in node:
            _strict(item)
    return node


def crd_errors(manifest: dict[str, Any]) -> list[str]:
    """Schema violations of a custom resource, as 'path: message' lines (empty when valid)."""
    key = crd_key(manifest)
    assert key is not None, f"no CRD schema for {manifest['apiVersion']} {manifest['kind']}"
    version = manifest["apiVersion"].split("/")[1]
    validator = _validator(key[0], key[1], version)
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(manifest)
    ]
