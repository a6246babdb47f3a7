#!/usr/bin/env bash
# The whole test suite: set-up (idempotent), type check, TypeScript tests, Python tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsc --noEmit
npx vitest run
bash scripts/pytest.sh
