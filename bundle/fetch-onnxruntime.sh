#!/usr/bin/env bash
# Puts the ONNX Runtime shared library where the engine looks by default:
#   <repo>/.local/onnxruntime/libonnxruntime.so
# It comes from the pinned PyPI `onnxruntime` wheel (the library ships inside it, in onnxruntime/capi/).
# Beside it goes libonnxruntime.so.<version>.record.json, the library's size and SHA-256, which the
# engine checks before loading it (a truncated library would otherwise crash with SIGBUS).
# Idempotent: does nothing when the library of the pinned version is there and matches its record;
# a library without a record, or not matching it, is extracted again (replaced atomically, so a
# process that has the old file loaded keeps running).
set -euo pipefail
ORT_VERSION="${ORT_VERSION:-1.32.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.local/onnxruntime"
name="libonnxruntime.so.$ORT_VERSION"
lib="$dest/$name"
record="$lib.record.json"

# The record of the library file $1, named $2, as the engine reads it (engine/src/model/library.rs).
record_of() {
  local size sha
  size="$(stat -c %s "$1")"
  sha="$(sha256sum "$1" | cut -d ' ' -f 1)"
  printf '{"format": "sam2-rotoscope-library-record", "version": 1, "file": "%s", "bytes": %s, "sha256": "%s"}\n' \
    "$2" "$size" "$sha"
}

if [ -f "$lib" ] && [ -L "$dest/libonnxruntime.so" ] && [ -f "$record" ] &&
   [ "$(record_of "$lib" "$name")" = "$(cat "$record")" ]; then
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
tmp="$dest/.$name.tmp.$$"
trap 'rm -f "$tmp" "$tmp.record"' EXIT
# zipfile checks each member's CRC as it reads, so a damaged wheel fails here.
python3 - "$wheel" "$tmp" "$ORT_VERSION" <<'PY'
import sys, zipfile, os
wheel, out_path, version = sys.argv[1:]
name = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as z:
    if name not in z.namelist():
        sys.exit(f"error: {os.path.basename(wheel)} does not contain {name}; the wheel layout changed.")
    with z.open(name) as src, open(out_path, "wb") as out:
        out.write(src.read())
PY
record_of "$tmp" "$name" >"$tmp.record"
mv -f "$tmp" "$lib"
mv -f "$tmp.record" "$record"
trap - EXIT
ln -sf "$name" "$dest/libonnxruntime.so"
echo "onnxruntime $ORT_VERSION: installed in $dest (with its record, $(basename "$record"))"
