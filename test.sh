#!/usr/bin/env bash
# README command 2: run every test. Sets up only what the tests need (no PyTorch: the tests read the
# committed fixtures in tests/fixtures, made by bundle/exporter/make-fixtures.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bundle/setup-system.sh
bundle/fetch-onnxruntime.sh
# The GPU-path tests run on lavapipe (installed above); make them fail rather than skip without it.
export SAM2_REQUIRE_GPU_ADAPTER=1
# Mesa complains on every device open without a runtime dir; give it one.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR}" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"
  chmod 700 "$XDG_RUNTIME_DIR"
  export XDG_RUNTIME_DIR
fi
cargo test --workspace
# The fallback when the ONNX Runtime library lacks the GPU provider the engine was built with: a CUDA build
# of the engine's model tests, run with the CPU-only library fetched above.
cargo test -p sam2-engine --features cuda --lib model::
# bench/gpu.sh's CPU-provider mode: the GPU benchmark's whole pipeline, small, on the CPU (no PyTorch needed).
bench/gpu.sh --cpu
