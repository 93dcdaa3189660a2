#!/usr/bin/env bash
# The main job: installs missing Debian packages, builds the demo examples in Release (-j2) and runs
# them, printing their output.
# Usage: scripts/demo.sh            (build directory: build/, or $CONTRASTIVE_BUILD_DIR)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build_dir="${CONTRASTIVE_BUILD_DIR:-build}"

# The examples the demo runs, in order: "<target> [arguments...]". Add new examples here; those
# not (yet) defined by examples/CMakeLists.txt are skipped.
demo=(
  "quickstart"
  "quickstart_xtensor"
  "train_simclr --quick"
  "train_two_tower --quick"
)
# Extra Debian packages the examples need, installed only if missing: the training examples read
# Fashion-MNIST from the Debian package.
demo_packages=(dataset-fashion-mnist)

scripts/install-deps.sh "${demo_packages[@]}"

generator=(-G Ninja)
if [ -f "$build_dir/CMakeCache.txt" ]; then
  generator=()
fi
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release

# Build only the example targets the build system knows (not the tests and benchmarks).
known="$(cmake --build "$build_dir" --target help)"
targets=()
for entry in "${demo[@]}"; do
  read -r -a words <<<"$entry"
  if grep -Eq "^(\.\.\. )?${words[0]}(:| |\$)" <<<"$known"; then
    targets+=("${words[0]}")
  else
    echo "demo: example '${words[0]}' is not built by this checkout yet; skipping" >&2
  fi
done
if [ ${#targets[@]} -eq 0 ]; then
  echo "demo: none of the demo examples exist yet (${demo[*]})" >&2
  exit 1
fi
cmake --build "$build_dir" -j2 --target "${targets[@]}"

for entry in "${demo[@]}"; do
  read -r -a words <<<"$entry"
  name="${words[0]}"
  exe="$build_dir/examples/$name"
  if [ ! -x "$exe" ]; then
    exe="$(find "$build_dir/examples" -type f -name "$name" -perm -u+x 2>/dev/null | head -n 1)"
  fi
  if [ -z "$exe" ]; then
    continue   # skipped above
  fi
  echo "==> $exe ${words[*]:1}"
  "$exe" "${words[@]:1}"
done
