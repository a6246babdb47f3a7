#!/usr/bin/env bash
# Python tests with the checkout's venv: the whole of test/python, or the files/ids given.
# pytest's exit 5 ("no tests collected") counts as a failure here.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$(pwd)/python${PYTHONPATH:+:$PYTHONPATH}"
targets=(test/python)
for arg in "$@"; do
  if [ -e "${arg%%::*}" ]; then targets=(); fi
done
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${targets[@]}" "$@"
