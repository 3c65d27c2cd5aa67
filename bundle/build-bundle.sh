#!/usr/bin/env bash
# Builds the OpenFX plugin and lays out its bundle:
#
#   target/bundle/SAM2Rotoscope.ofx.bundle/Contents/
#     Linux-x86-64/SAM2Rotoscope.ofx              the plugin (the cdylib, renamed)
#     Linux-x86-64/libonnxruntime.so.1.32.0       ONNX Runtime (from .local/onnxruntime/)
#     Linux-x86-64/libonnxruntime.so.1.32.0.record.json   its size and SHA-256, checked before it
#                                                 is loaded (engine/src/model/library.rs)
#     Resources/com.sam2rotoscope.SAM2Rotoscope.png   the icon hosts show
#     Resources/models/                           the default model location (empty unless
#                                                 --with-test-model; see bundle/INSTALL.md)
#     Resources/templates/<family>-<size>/        weight-free graph templates: an official
#                                                 checkpoint (.pt) given as the model is turned
#                                                 into a model directory with them, in Rust
#
# Options:
#   --with-test-model   copy tests/fixtures/models/test into Resources/models/test (the demo model)
#   --debug             bundle a debug build (faster to build; for tests)
#   --features LIST     cargo features of the plugin, e.g. cuda (GPU execution providers; the
#                       GPU build of ONNX Runtime is then pointed at with SAM2_ORT_DYLIB)
#   --out DIR           put the bundle in DIR instead of target/bundle ($CARGO_TARGET_DIR/bundle)
#   --templates LIST    also make the graph templates of these sizes with the exporter (its venv is
#                       needed at build time only), e.g. "tiny small base_plus large", for both
#                       families; kept in $CARGO_TARGET_DIR/templates between builds. The committed
#                       templates of bundle/templates (the test architecture) are always copied.
#
# Idempotent: the bundle is rebuilt in place each run. Install it by copying the .ofx.bundle folder
# where your host looks (bundle/INSTALL.md), or point OFX_PLUGIN_PATH at its parent folder.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

with_test_model=0
profile=release
features=""
out=""
templates=""
while [ $# -gt 0 ]; do
  case "$1" in
    --with-test-model) with_test_model=1 ;;
    --debug) profile=debug ;;
    --features) shift; features="${1:?--features needs a list}" ;;
    --out) shift; out="${1:?--out needs a folder}" ;;
    --templates) shift; templates="${1?--templates needs a list of sizes}" ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

target="${CARGO_TARGET_DIR:-$root/target}"
out="${out:-$target/bundle}"
name=SAM2Rotoscope
id=com.sam2rotoscope.SAM2Rotoscope
ort_version="${ORT_VERSION:-1.32.0}"
ort_lib="$root/.local/onnxruntime/libonnxruntime.so.$ort_version"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) arch=Linux-x86-64; lib=libsam2_rotoscope_ofx.so ;;
  *) echo "error: this script bundles for Linux x86-64; see bundle/INSTALL.md for the macOS and Windows layouts." >&2; exit 1 ;;
esac

# Fetches the library if it is missing, and again if it does not match its record: the bundle
# must ship a whole library with a record that vouches for it.
bundle/fetch-onnxruntime.sh

cargo_flags=(-p sam2-rotoscope-ofx --lib)
[ "$profile" = release ] && cargo_flags+=(--release)
[ -n "$features" ] && cargo_flags+=(--features "$features")
echo "building the plugin ($profile)"
cargo build "${cargo_flags[@]}"
built="$target/$profile/$lib"
[ -f "$built" ] || { echo "error: cargo did not produce $built" >&2; exit 1; }

bundle="$out/$name.ofx.bundle"
contents="$bundle/Contents"
tmp="$out/.$name.ofx.bundle.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/Contents/$arch" "$tmp/Contents/Resources/models"
cp "$built" "$tmp/Contents/$arch/$name.ofx"
cp "$ort_lib" "$ort_lib.record.json" "$tmp/Contents/$arch/"
cp "$root/bundle/resources/$id.png" "$tmp/Contents/Resources/"
cat >"$tmp/Contents/Resources/models/README.txt" <<EOF
The default model location of SAM 2 Rotoscope: when the Model Directory parameter is empty, the
plugin uses a model in this folder (a manifest.json right here, or the first sub-folder by name
holding one). Export one with bundle/exporter (see the project README) and copy its folder here.
EOF
mkdir -p "$tmp/Contents/Resources/templates"
cp -r "$root/bundle/templates/." "$tmp/Contents/Resources/templates/"
for size in $templates; do
  for family in sam2.1 sam2; do
    made="$target/templates/$family-$size"
    if [ ! -f "$made/template.json" ]; then
      echo "making the graph template $family-$size"
      "$root/bundle/exporter/py" template --family "$family" --size "$size" --out "$target/templates"
    fi
    cp -r "$made" "$tmp/Contents/Resources/templates/"
  done
done
if [ "$with_test_model" = 1 ]; then
  cp -r "$root/tests/fixtures/models/test" "$tmp/Contents/Resources/models/test"
fi

# Swap the finished bundle in, so a host scanning the folder never sees half of one.
mkdir -p "$out"
rm -rf "$bundle"
mv "$tmp" "$bundle"
trap - EXIT

# The binary must export the two OpenFX entry points.
if command -v nm >/dev/null 2>&1; then
  for sym in OfxGetNumberOfPlugins OfxGetPlugin; do
    nm -D --defined-only "$contents/$arch/$name.ofx" | grep -q " T $sym$" ||
      { echo "error: $contents/$arch/$name.ofx does not export $sym" >&2; exit 1; }
  done
fi
echo "bundle: $bundle"
[ "$with_test_model" = 1 ] && echo "  with the test model in Contents/Resources/models/test"
echo "  use it with: OFX_PLUGIN_PATH=$out <host>, or copy it to /usr/OFX/Plugins (bundle/INSTALL.md)"
