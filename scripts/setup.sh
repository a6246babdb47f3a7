#!/usr/bin/env bash
# All set-up for a checkout, idempotent and fast when already done:
#   - npm packages (npm ci, re-run only when package-lock.json changes);
#   - a Python virtual environment in .venv with requirements.txt;
#   - torch: a host torch that is already importable (e.g. a CUDA build) is kept by giving the
#     venv the system site-packages; otherwise torch==2.13.0 (CPU wheel) is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log() { printf '[setup] %s\n' "$*" >&2; }
hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

# --- Node ---
lock_hash=$(hash_of package.json package-lock.json 2>/dev/null || hash_of package.json)
if [ ! -f node_modules/.dmfr-stamp ] || [ "$(cat node_modules/.dmfr-stamp)" != "$lock_hash" ]; then
  log "installing npm packages"
  # npm install (not npm ci): it honours package-lock.json, and npm 11's ci rejects locks that omit
  # platform-only optional packages (vite's napi-windows-process-start-time) as out of sync.
  npm install --no-audit --no-fund --loglevel=error >&2
  lock_hash=$(hash_of package.json package-lock.json)
  echo "$lock_hash" > node_modules/.dmfr-stamp
fi

# --- Python ---
py=${DMFR_BASE_PYTHON:-}
if [ -z "$py" ]; then
  for cand in python3.11 python3.12 python3 python; do
    if command -v "$cand" >/dev/null 2>&1; then py=$cand; break; fi
  done
fi
[ -n "$py" ] || { log "no python3 found (need Python >= 3.10)"; exit 1; }

if [ ! -x .venv/bin/python ]; then
  if "$py" -c 'import torch' >/dev/null 2>&1; then
    host_torch=$("$py" -c 'import torch; print(torch.__version__)')
    # requirements.txt says torch>=2.4: pip would otherwise quietly put a PyPI torch over it
    if ! "$py" -c 'import sys, torch; sys.exit(tuple(map(int, torch.__version__.split("+")[0].split(".")[:2])) < (2, 4))'; then
      log "the host's torch $host_torch is older than 2.4, which dmfr needs; upgrade it, or set DMFR_BASE_PYTHON to a python without torch to get torch==2.13.0 (CPU)"
      exit 1
    fi
    log "keeping the host's torch $host_torch"
    "$py" -m venv --system-site-packages .venv
  else
    "$py" -m venv .venv
  fi
fi
vpy=.venv/bin/python
# pip, without the machine-specific "Location … is ignored" noise some hosts' pip.conf causes.
pip_quiet() { "$vpy" -m pip --quiet --disable-pip-version-check "$@" 2>&1 | { grep -v 'is ignored: it is neither' || true; } >&2; return "${PIPESTATUS[0]}"; }
if ! "$vpy" -c 'import torch' >/dev/null 2>&1; then
  log "installing torch==2.13.0"
  pip_quiet install torch==2.13.0
fi
req_hash=$(hash_of requirements.txt)
if [ ! -f .venv/.dmfr-stamp ] || [ "$(cat .venv/.dmfr-stamp)" != "$req_hash" ]; then
  log "installing requirements.txt"
  pip_quiet install -r requirements.txt
  echo "$req_hash" > .venv/.dmfr-stamp
fi
# The package is used from the source tree (PYTHONPATH=python is set by the launcher);
# a .pth file makes `import dmfr` work in the venv's python too.
site=$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$root/python" > "$site/dmfr-src.pth"
