#!/usr/bin/env bash
# Installs the Debian 12 packages the build needs, only if some are missing (apt-get; sudo only
# when not root). Extra package names may be given as arguments.
# Usage: scripts/install-deps.sh [package...]
set -euo pipefail

packages=(g++ clang libclang-rt-14-dev libomp-dev cmake ninja-build libeigen3-dev libxtensor-dev catch2 libbenchmark-dev libcli11-dev
          zlib1g-dev dataset-fashion-mnist libopenmpi-dev openmpi-bin doxygen python3-torch libtorch-dev python3-pytest "$@")

if ! command -v dpkg >/dev/null 2>&1; then
  echo "install-deps: no dpkg (not Debian?); install these yourself: ${packages[*]}" >&2
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
