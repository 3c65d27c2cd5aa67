#!/usr/bin/env bash
# Creates bundle/exporter/.venv with the pinned exporter environment (PyTorch CPU use, official sam2, ONNX).
# Only the exporter and the reference tool need it; building and testing the Rust code does not.
# About 3 GB of downloads and a few minutes the first time; idempotent afterwards.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
stamp="$venv/.requirements.sha256"
want="$(cat "$here/requirements.txt" "$here/setup-venv.sh" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "exporter venv: up to date ($venv)"
  exit 0
fi
python3 -m venv "$venv" || { echo "error: could not create a Python venv at $venv (is python3-venv installed?)" >&2; exit 1; }
if ! "$venv/bin/pip" install --quiet -r "$here/requirements.txt"; then
  echo "error: installing the exporter's pinned packages failed (see pip's message above); check that PyPI is reachable and there are ~6 GB free." >&2
  exit 1
fi
# sam2 is an sdist: build it against the torch just installed, without its CUDA extension.
if ! SAM2_BUILD_CUDA=0 "$venv/bin/pip" install --quiet --no-deps --no-build-isolation "sam2==1.1.0"; then
  echo "error: installing sam2 1.1.0 failed (see pip's message above)." >&2
  exit 1
fi
echo "$want" > "$stamp"
echo "exporter venv: ready ($venv)"
