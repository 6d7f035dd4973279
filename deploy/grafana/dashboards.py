"""Source of the Grafana dashboards in this directory: ``python deploy/grafana/dashboards.py``.

Each dashboard is built from a few panel helpers and written as plain Grafana JSON
(schemaVersion 39, Grafana 10.4 and later), so the files import as they are and
the Helm chart ships them unchanged. Edit the panels here, rerun the script, and
commit both; ``--check`` fails when a JSON file differs from what this script
writes (tests/unit/test_dashboards.py runs it).

Every query selects its data source through the ``datasource`` variable (type
prometheus) and filters moderator_* series with the ``namespace`` and ``job``
variables, ray_serve_* series with ``application`` and ``deployment``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Run as a script or loaded by file path (tests): the panel builders sit beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from boards_pipeline import model_serving, pipeline
from boards_policy_cache import cache, policy
from panels import HERE

DASHBOARDS = {
    "moderator-pipeline.json": pipeline,
    "moderator-model-serving.json": model_serving,
    "moderator-policy.json": policy,
    "moderator-cache.json": cache,
}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a JSON file is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run python deploy/grafana/dashboards.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
