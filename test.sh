#!/usr/bin/env bash
# README command 2: run every test. Sets up only what the tests need (no PyTorch: the tests read the
# committed fixtures in tests/fixtures, made by bundle/exporter/make-fixtures.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bundle/setup-system.sh
bundle/fetch-onnxruntime.sh
cargo test --workspace
