#!/usr/bin/env bash
# Set up (idempotent) and run the embedded demo; extra arguments go to `moderator demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/moderator demo "$@"
