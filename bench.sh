#!/usr/bin/env bash
# README: ./bench.sh — measures the engine against its targets and prints a table (what, value, target, met?).
#
#   - the shrunk fixture model (tests/fixtures/models/test, 256²) on every clip in tests/fixtures/clips;
#   - the tiny architecture with seeded random weights at 1024² (.local/models/sam2.1-tiny-random, exported
#     here the first time when the exporter venv exists) on the first BENCH_TINY_FRAMES frames of the first clip;
#   - peak memory with a track cache (the session's cold tier, and `sam2-rotoscope track --cache`), 200 vs 2000
#     frames, 256² model, one object; with BENCH_RSS_1024=100,1000 also three objects on the test architecture
#     exported at 1024² (target/models/test-1024, seeded random weights, exported here the first time when the
#     exporter venv exists: the per-frame state of a 1024² model, 256² logits and 64² memories) — about 1 s per
#     frame on 2 idle cores, so opt-in; BENCH_TINY_RSS=100,1000 does the same with the tiny model (hours);
#   - the track cache's encoding: size per frame and object at 1024² (tiny model's logits; mask prompts from the
#     real-photo ground truth of tests/fixtures/edges) and the matte difference against f32 logits;
#   - the re-track case at 1024²: BENCH_RETRACK_FRAMES (default 24) frames of the first clip played forward then
#     backward, a correction click on the middle frame and Track Forward to the end, engine and official (0: skip);
#   - the official PyTorch predictor on the same weights, clips, frames and thread count, when the exporter
#     venv exists (bundle/exporter/setup-venv.sh); without it those rows say "skipped";
#   - precision: the 1024² set at precision exact and fast (its fast set is added the first time), against the
#     official predictor in float32 and under bfloat16 autocast on the same frames: speed and deviation rows.
#
# Release build; ONNX Runtime and PyTorch both get BENCH_THREADS threads (default 2). About 3 minutes on 2 cores
# with the venv (most of it the 1024² runs; the first run also exports the 1024² set), under one without. The
# table is also written to target/bench/report.md. Timings are only meaningful on an otherwise idle machine: the
# header says how much CPU other processes took during each timed part, and warns.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
threads="${BENCH_THREADS:-2}"
tiny_frames="${BENCH_TINY_FRAMES:-8}"
clicks="${BENCH_CLICKS:-20}"
retrack_frames="${BENCH_RETRACK_FRAMES:-24}"
out=target/bench
fixture=tests/fixtures/models/test
tiny=.local/models/sam2.1-tiny-random
shrunk_1024=target/models/test-1024

bundle/setup-system.sh
bundle/fetch-onnxruntime.sh
cargo build --release -p sam2-engine --example bench
# Separately: `--example bench` would select no target of the CLI's package (its `track --cache` is measured too).
cargo build --release -p sam2-rotoscope-cli

mkdir -p "$out"
rm -f "$out"/official-*.json "$out/report.md"
clips=()
for c in tests/fixtures/clips/*/; do clips+=("${c%/}"); done
clip_args=()
for c in "${clips[@]}"; do clip_args+=(--clip "$c"); done
args=(--threads "$threads" --clicks "$clicks" --retrack-frames "$retrack_frames" --fixture-model "$fixture" "${clip_args[@]}" --report "$out/report.md")

have_venv=false
[ -x bundle/exporter/.venv/bin/python ] && have_venv=true

# A set exported by an older exporter (other graphs for the same weights) is exported again: the bench measures
# the graphs this checkout makes.
exporter_version() { sed -n 's/^EXPORTER_VERSION = "\(.*\)"$/\1/p' bundle/exporter/sam2export/__init__.py; }
stale_export() {
  [ -f "$1/manifest.json" ] && ! grep -q "\"exporter_version\": \"$(exporter_version)\"" "$1/manifest.json"
}
for set in "$tiny" "$shrunk_1024"; do
  if stale_export "$set" && $have_venv; then
    echo "bench: $set was made by another exporter version; exporting it again" >&2
    rm -rf "$set"
  fi
done
if [ ! -f "$tiny/manifest.json" ] && $have_venv; then
  echo "bench: exporting the tiny random set to $tiny (once; a few minutes)" >&2
  bundle/exporter/py export --size tiny --random-weights --seed 0 --out "$tiny"
fi
# Precision fast needs the model's fast set (quantized graphs, no PyTorch needed): added once.
if [ -f "$tiny/manifest.json" ] && [ ! -f "$tiny/fast/manifest.json" ] && $have_venv; then
  echo "bench: adding the fast set to $tiny (once)" >&2
  bundle/exporter/py fast --model "$tiny" >&2
fi
if [ -f "$tiny/manifest.json" ]; then
  args+=(--tiny-model "$tiny" --tiny-frames "$tiny_frames")
  # The 1024² memory test with a track cache, three objects (BENCH_TINY_RSS=100,1000): long, so opt-in.
  if [ -n "${BENCH_TINY_RSS:-}" ]; then
    args+=(--tiny-rss-frames "$BENCH_TINY_RSS")
  fi
else
  echo "bench: skipping the 1024² runs: $tiny is missing and there is no exporter venv to make it (bundle/exporter/setup-venv.sh)" >&2
  args+=(--tiny-skipped "no $tiny, and no exporter venv to make it (bundle/exporter/setup-venv.sh)")
fi

# The 1024² memory test with three objects on the shrunk architecture (BENCH_RSS_1024=100,1000): opt-in.
if [ -n "${BENCH_RSS_1024:-}" ]; then
  if [ ! -f "$shrunk_1024/manifest.json" ] && $have_venv; then
    echo "bench: exporting the test architecture at 1024² to $shrunk_1024 (once; a few minutes)" >&2
    bundle/exporter/py export --size test --image-size 1024 --random-weights --seed 0 --out "$shrunk_1024"
  fi
  if [ -f "$shrunk_1024/manifest.json" ]; then
    args+=(--rss-1024-model "$shrunk_1024" --rss-1024-frames "$BENCH_RSS_1024")
  else
    args+=(--rss-1024-skipped "no $shrunk_1024, and no exporter venv to make it (bundle/exporter/setup-venv.sh)")
  fi
else
  args+=(--rss-1024-skipped "not run: about 1 s per frame with three objects on 2 idle cores (BENCH_RSS_1024=100,1000 ./bench.sh)")
fi

if $have_venv; then
  echo "bench: official predictor, fixture model" >&2
  bundle/exporter/py bench_official --model "$fixture" "${clip_args[@]}" --threads "$threads" --clicks "$clicks" \
    --out "$out/official-fixture.json" >&2
  args+=(--official-fixture "$out/official-fixture.json")
  if [ -f "$tiny/manifest.json" ]; then
    echo "bench: official predictor, tiny model at 1024² (seconds per frame)" >&2
    bundle/exporter/py bench_official --model "$tiny" --clip "${clips[0]}" --frames "$tiny_frames" \
      --threads "$threads" --clicks "$clicks" --out "$out/official-tiny.json" >&2
    args+=(--official-tiny "$out/official-tiny.json")
    if [ "$retrack_frames" != 0 ]; then
      echo "bench: official predictor, re-track case at 1024² ($retrack_frames frames)" >&2
      bundle/exporter/py bench_retrack --model "$tiny" --clip "${clips[0]}" --frames "$retrack_frames" \
        --threads "$threads" --out "$out/official-retrack.json" >&2
      args+=(--official-retrack "$out/official-retrack.json")
    fi
    echo "bench: official predictor, tiny model at 1024², float32 and bfloat16 autocast (precision rows)" >&2
    bundle/exporter/py bench_precision --model "$tiny" --clip "${clips[0]}" --frames "$tiny_frames" \
      --threads "$threads" --out "$out/official-precision.json" >&2
    args+=(--official-precision "$out/official-precision.json")
  fi
else
  echo "bench: skipping the official predictor: no exporter venv (bundle/exporter/setup-venv.sh)" >&2
  args+=(--official-skipped "no exporter venv, so no official predictor (bundle/exporter/setup-venv.sh)")
fi

# Mesa's Vulkan driver (the GPU-path rows) complains on stderr without a runtime directory.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"
  export XDG_RUNTIME_DIR
  trap 'rm -rf "$XDG_RUNTIME_DIR"' EXIT
fi
echo "bench: engine" >&2
target/release/examples/bench "${args[@]}"
