#!/usr/bin/env bash
# The Python binding's tests, as a user would meet the package: build a wheel
# with pip (offline, --no-build-isolation), install it into a fresh venv, and
# run the unittest suite there against C peers from the build tree.
#
#   bindings/python/run-tests.sh [BUILD_DIR]     (default: build)
#
# Runs once per Python found: `python3`, and Debian's /usr/bin/python3 too
# when it is another one (it has python3-numpy, for the numpy lease tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=$(realpath "${1:-build}")
work="$build/python"
rm -rf "$work"
mkdir -p "$work"
pythons=(python3)
if [ -x /usr/bin/python3 ] && [ "$(realpath "$(command -v python3)")" != "$(realpath /usr/bin/python3)" ]; then
  pythons+=(/usr/bin/python3)
fi
for py in "${pythons[@]}"; do
  name=$(basename "$(realpath "$(command -v "$py")")")-$(echo "$py" | tr -c 'a-z0-9\n' '_')
  echo "-- $py ($("$py" --version))"
  # System site-packages: numpy and cffi where the system has them; nothing from PyPI.
  "$py" -m venv --system-site-packages "$work/$name"
  "$work/$name/bin/pip" wheel -q --no-build-isolation --no-deps -w "$work/$name/wheels" ./bindings/python
  "$work/$name/bin/pip" install -q --no-index "$work/$name"/wheels/dmaq-*.whl
  # From outside the source tree, so `import dmaq` is the installed wheel.
  (cd "$work" && DMAQ_TEST_PEER="$build/tests/dmaq-test-peer" \
     "$work/$name/bin/python" -m unittest discover -s "$OLDPWD/bindings/python/tests" -t "$OLDPWD/bindings/python/tests")
done
