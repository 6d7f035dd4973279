#!/usr/bin/env bash
# Run the fault-injection, hostile-input and Kafka codec tests and rewrite docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
figures=$(mktemp)
MODERATOR_FAULT_FIGURES="$figures" .venv/bin/python -m pytest -q \
  tests/faults tests/unit/test_hostile_inputs.py tests/integration/test_hostile_stream.py \
  tests/integration/test_kafka_codecs.py
machine="$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(date -u +%Y-%m-%d)"
.venv/bin/python -m tests.faults.report "$figures" docs/reliability.md "$machine"
rm -f "$figures"
