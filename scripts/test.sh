#!/usr/bin/env bash
# One command: install with the test tools, then run the test suite (slow and GPU tests are
# marked; GPU tests skip without CUDA, browser tests skip without Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev
exec python3 -m pytest -q "$@"
