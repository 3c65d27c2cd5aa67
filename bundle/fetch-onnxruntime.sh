#!/usr/bin/env bash
# Puts the ONNX Runtime shared library where the engine looks by default:
#   <repo>/.local/onnxruntime/libonnxruntime.so
# It comes from the pinned PyPI `onnxruntime` wheel (the library ships inside it, in onnxruntime/capi/).
# Idempotent: does nothing when the library of the pinned version is already there.
set -euo pipefail
ORT_VERSION="${ORT_VERSION:-1.32.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.local/onnxruntime"
lib="$dest/libonnxruntime.so.$ORT_VERSION"
if [ -f "$lib" ] && [ -L "$dest/libonnxruntime.so" ]; then
  echo "onnxruntime $ORT_VERSION: already in $dest"
  exit 0
fi
mkdir -p "$dest" "$root/.local/wheels"
if ! python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$root/.local/wheels" \
      "onnxruntime==$ORT_VERSION" >/dev/null; then
  echo "error: could not download the onnxruntime $ORT_VERSION wheel from PyPI; check that PyPI is reachable (pip config) and try again." >&2
  exit 1
fi
wheel="$(ls "$root"/.local/wheels/onnxruntime-"$ORT_VERSION"-*.whl | head -n 1)"
python3 - "$wheel" "$dest" "$ORT_VERSION" <<'PY'
import sys, zipfile, os
wheel, dest, version = sys.argv[1:]
name = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as z:
    if name not in z.namelist():
        sys.exit(f"error: {os.path.basename(wheel)} does not contain {name}; the wheel layout changed.")
    with z.open(name) as src, open(os.path.join(dest, os.path.basename(name)), "wb") as out:
        out.write(src.read())
PY
ln -sf "libonnxruntime.so.$ORT_VERSION" "$dest/libonnxruntime.so"
echo "onnxruntime $ORT_VERSION: installed in $dest"
