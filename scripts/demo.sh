#!/usr/bin/env bash
# One command: install, then run the main job on the built-in offline demo benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec ssp demo "$@"
