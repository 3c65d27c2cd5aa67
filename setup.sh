#!/usr/bin/env bash
# README command 1: set everything up on a fresh Debian machine and run the demo.
# Idempotent: steps already done are skipped. Each failing step stops with a sentence saying what to do.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
step() { printf '\n== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

step "1/5 system packages (lavapipe Vulkan driver, expat, cmake and nasm for libjpeg-turbo)"
bundle/setup-system.sh || die "the system packages could not be installed (see above)."

step "2/5 ONNX Runtime shared library (from the pinned PyPI wheel)"
bundle/fetch-onnxruntime.sh || die "the ONNX Runtime library could not be fetched (see above)."

step "3/5 Rust workspace (release build)"
command -v cargo >/dev/null || die "cargo is not installed; install Rust 1.95 or newer (rustup)."
cargo build --workspace --release --quiet || die "the Rust build failed (see the compiler's message above)."

step "4/5 exporter environment (PyTorch, official sam2, ONNX; a few minutes the first time)"
bundle/exporter/setup-venv.sh || die "the exporter environment could not be created (see above)."

step "5/5 demo: export the shrunk SAM 2.1 test model, verify it against PyTorch, load it, track a clip"
bundle/exporter/py export --size test --random-weights --seed 3 --noise-std 0.1 --out .local/models/test \
  || die "the export or its self-check failed (see above)."
target/release/sam2-rotoscope check-model .local/models/test \
  || die "the engine could not load the exported model (see above)."
# Two objects crossing: clicks on frame 0, tracked through the clip, one matte per object and frame,
# plus the trace of every step (the reference-trace format).
mkdir -p out/demo
target/release/sam2-rotoscope track --model .local/models/test --script tests/fixtures/scripts/two_objects.json \
  --out out/demo/mattes --trace out/demo/trace --force --device cpu \
  || die "tracking the demo clip failed (see above)."

step "demo, part 2: the OpenFX effect in a real host (OpenFX HostSupport), tracking the same clip"
bundle/build-bundle.sh --with-test-model || die "the OpenFX bundle could not be built (see above)."
cargo run --release --quiet -p sam2-rotoscope-tests --example plugin_demo \
  || die "the effect could not be run in the test host (see above)."
echo
echo "Done: CLI mattes in out/demo/mattes/object_<id>/ (trace in out/demo/trace); the effect's overlay and"
echo "matte frames in out/demo/plugin/, and the contact sheet out/demo/contact_sheet.png."
echo "Tests: ./test.sh   Benchmarks: ./bench.sh"
