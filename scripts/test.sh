#!/usr/bin/env bash
# One command: install with the test tools, run the linter (ruff check and ruff format --check), then
# the test suite (slow and GPU tests are marked; GPU tests skip without CUDA, browser tests skip
# without Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev
python3 -m ruff check .
python3 -m ruff format --check .
exec python3 -m pytest -q "$@"
