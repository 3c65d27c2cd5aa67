#!/usr/bin/env bash
# README: bench/gpu.sh — the engine on an NVIDIA GPU beside the official predictor, one table.
#
#   bench/gpu.sh              on a bare Linux machine with an NVIDIA driver (run from a copy of the checkout):
#                             installs onnxruntime-gpu (CUDA 13), the CUDA/cuDNN runtime wheels and the exporter's
#                             environment (PyTorch, official sam2) from PyPI into target/gpu/venv, exports tiny at
#                             1024² with seeded random weights (exact graphs and the fast sets, the GPU one fp16;
#                             CUDA hidden while exporting,
#                             since the official code puts its RoPE tables on "cuda" whenever it sees a GPU),
#                             writes a 48-frame 1280×720 synthetic clip, runs the engine on the CUDA provider (and
#                             WebGPU when a Vulkan loader is present) and the official predictor in fp32 and under
#                             bf16 autocast, and prints one table: per-graph ms, frames/s, GPU memory after 24 vs
#                             48 frames, ms per frame with 1/3/8 objects, fp16-vs-fp32 deviation, matte upsampling
#                             at 1080p/4K. Under 10 minutes on a 16-core H100 machine, most of it pip and export.
#   bench/gpu.sh --cpu        the same pipeline on ONNX Runtime's CPU provider with the 256² fixture model, a
#                             small clip and the checkout's ONNX Runtime: what CI runs (./test.sh), well under two
#                             minutes. Official rows come from the exporter venv when there is one (on the CPU),
#                             else they are skipped, saying so. Timings in this mode check the plumbing only.
#   bench/gpu.sh --build-only builds the CUDA/WebGPU engine binary into target/gpu/bin (needs Rust; no GPU), so that
#                             a GPU machine without Rust can run the script from a copy that carries target/gpu/bin.
#
# Rust is optional on the GPU machine: target/gpu/bin/bench, when present, is used as it is; otherwise cargo builds
# it (release, --features cuda,webgpu). A tiny model already exported (target/gpu/models/tiny) is reused.
# The table is also written to target/gpu/report.md (target/gpu/cpu-report.md in --cpu mode).
# Environment: BENCH_THREADS (CPU threads per graph, default 4; 2 with --cpu), BENCH_PYTHON_VENV (--cpu: the venv
# with PyTorch, default bundle/exporter/.venv), PIP_INDEX_URL as pip reads it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode=gpu
for arg in "$@"; do
  case "$arg" in
    --cpu) mode=cpu ;;
    --build-only) mode=build ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: bench/gpu.sh does not know the option '$arg'; use --cpu, --build-only or nothing." >&2; exit 2 ;;
  esac
done

work=target/gpu
mkdir -p "$work"
say() { echo "bench/gpu.sh: $*" >&2; }
started=$SECONDS

# --- the engine's bench binary -------------------------------------------------------------------------------------
gpu_bin="$work/bin/bench"
build_gpu_bin() {
  if ! command -v cargo >/dev/null; then
    echo "error: $gpu_bin is missing and there is no cargo to build it; run bench/gpu.sh --build-only on a machine with Rust and carry target/gpu/bin." >&2
    exit 1
  fi
  say "building the engine's bench with CUDA and WebGPU (release)"
  local dir="${CARGO_TARGET_DIR:-$root/target}"
  cargo build --release -p sam2-engine --example bench --features sam2-engine/cuda,sam2-engine/webgpu >&2
  mkdir -p "$work/bin"
  cp "$dir/release/examples/bench" "$gpu_bin"
}

if [ "$mode" = build ]; then
  build_gpu_bin
  say "built $gpu_bin; carry target/gpu/bin with the checkout"
  exit 0
fi

if [ "$mode" = cpu ]; then
  # The plain build the tests already made (debug: this mode checks the plumbing, not the speed).
  bundle/fetch-onnxruntime.sh >&2
  if command -v cargo >/dev/null; then
    cargo build -p sam2-engine --example bench >&2
  fi
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/examples/bench"
  threads="${BENCH_THREADS:-2}"
  model=tests/fixtures/models/test
  clip="$work/clips/cpu-16"
  report="$work/cpu-report.md"
  providers=(--provider cpu)
  sizes=(--frames 6,12 --objects 1,3,8 --object-frames 4 --upsample-runs 3 --strict)
  official_frames=6,12
  # Eight objects cost the official predictor seconds a frame on a busy 2-core CPU: 1 and 3 say enough here.
  objects_args=(--objects 1,3 --object-frames 3)
  py_venv="${BENCH_PYTHON_VENV:-bundle/exporter/.venv}"
  if [ ! -x "$bin" ]; then
    echo "error: $bin is missing; build it with cargo build -p sam2-engine --example bench." >&2
    exit 1
  fi
  [ -d "$clip" ] || "$bin" gpu-clip --out "$clip" --frames 12 --size 320x180
else
  if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "error: no NVIDIA GPU answers nvidia-smi here; run bench/gpu.sh --cpu for the CPU-provider check." >&2
    exit 1
  fi
  # onnxruntime-gpu 1.31 is a CUDA 13 build: the driver must offer CUDA 13 or newer (driver 580 and later).
  driver_cuda="$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\)\..*/\1/p' | head -n 1)"
  if [ -n "$driver_cuda" ] && [ "$driver_cuda" -lt 13 ]; then
    echo "error: the NVIDIA driver offers CUDA $driver_cuda, but onnxruntime-gpu 1.31 needs CUDA 13 (driver 580 or newer)." >&2
    exit 1
  fi
  [ -x "$gpu_bin" ] || build_gpu_bin
  bin="$gpu_bin"
  threads="${BENCH_THREADS:-4}"
  py_venv="$work/venv"
  # --- Python: onnxruntime-gpu, the CUDA 13 and cuDNN 9 runtime wheels, the exporter's environment ---------------
  stamp="$py_venv/.gpu-requirements.sha256"
  want="$(cat bundle/exporter/requirements.txt "$0" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing onnxruntime-gpu, the CUDA/cuDNN wheels, PyTorch and sam2 into $py_venv (a few minutes)"
    python3 -m venv "$py_venv" || { echo "error: could not create a Python venv at $py_venv (is python3-venv installed?)" >&2; exit 1; }
    # The exporter's pins, with the GPU build of ONNX Runtime instead of the CPU one (both are the module onnxruntime).
    grep -v '^onnxruntime==' bundle/exporter/requirements.txt > "$work/requirements-gpu.txt"
    cat >> "$work/requirements-gpu.txt" <<'REQ'
onnxruntime-gpu==1.31.1
nvidia-cuda-runtime
nvidia-cublas
nvidia-cufft
nvidia-curand
nvidia-cudnn-cu13
REQ
    "$py_venv/bin/pip" install --quiet --upgrade pip >&2
    if ! "$py_venv/bin/pip" install --quiet -r "$work/requirements-gpu.txt" >&2; then
      echo "error: installing the GPU packages failed (see pip's message above); check that PyPI is reachable and there are ~10 GB free." >&2
      exit 1
    fi
    if ! SAM2_BUILD_CUDA=0 "$py_venv/bin/pip" install --quiet --no-deps --no-build-isolation "sam2==1.1.0" >&2; then
      echo "error: installing sam2 1.1.0 failed (see pip's message above)." >&2
      exit 1
    fi
    echo "$want" > "$stamp"
  fi
  site="$("$py_venv/bin/python" -c 'import onnxruntime, os; print(os.path.dirname(os.path.dirname(onnxruntime.__file__)))')"
  ort_lib="$(ls "$site"/onnxruntime/capi/libonnxruntime.so.1* 2>/dev/null | head -n 1)"
  if [ -z "$ort_lib" ]; then
    echo "error: the onnxruntime-gpu wheel in $site has no libonnxruntime.so.1.*" >&2
    exit 1
  fi
  export SAM2_ORT_DYLIB="$ort_lib"
  if ! "$py_venv/bin/python" -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())'; then
    echo "error: the onnxruntime in $py_venv has no CUDA provider (is the CPU-only onnxruntime installed over it?)." >&2
    exit 1
  fi
  # The CUDA, cuBLAS, cuFFT, cuRAND and cuDNN libraries of the nvidia-* wheels, for the CUDA provider's dlopen.
  libdirs="$(find "$site/nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)"
  export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  model="$work/models/tiny"
  clip="$work/clips/gpu-48"
  report="$work/report.md"
  providers=(--provider cuda)
  if ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
    providers+=(--provider webgpu)
  else
    say "no Vulkan loader (libvulkan.so.1): no WebGPU rows"
  fi
  sizes=(--frames 24,48 --objects 1,3,8 --object-frames 12)
  official_frames=24,48
  objects_args=(--objects 1,3,8 --object-frames 12)
  [ -d "$clip" ] || "$bin" gpu-clip --out "$clip" --frames 48 --size 1280x720
  if [ ! -f "$model/manifest.json" ] && [ -f .local/models/sam2.1-tiny-random/manifest.json ]; then
    model=.local/models/sam2.1-tiny-random
  fi
fi

py() { PYTHONPATH="$root/bundle/exporter" TQDM_DISABLE=1 PYTHONWARNINGS=ignore "$py_venv/bin/python" -m "sam2export.$1" "${@:2}"; }
have_python=false
[ -x "$py_venv/bin/python" ] && have_python=true

# --- the model: its exact graphs and its GPU fast set (fp16, what precision fast runs on a GPU) ----------------------
if [ "$mode" = gpu ] && [ ! -f "$model/manifest.json" ]; then
  say "exporting tiny at 1024² with random weights to $model (CUDA hidden)"
  CUDA_VISIBLE_DEVICES="" py export --size tiny --random-weights --seed 0 --no-verify --out "$model" >&2
fi
if [ ! -f "$model/fast-gpu/manifest.json" ]; then
  if $have_python; then
    say "adding the GPU fast set (fp16) to $model"
    py fast --model "$model" --sets gpu >&2 || say "adding the fp16 set failed; no fp16 row"
  else
    say "$model has no GPU fast set and there is no Python to add it; no fp16 row"
  fi
fi

# --- the official predictor ----------------------------------------------------------------------------------------
official_args=()
if $have_python; then
  if [ "$mode" = gpu ]; then runs=("cuda fp32" "cuda bf16"); else runs=("cpu fp32"); fi
  for run in "${runs[@]}"; do
    read -r device precision <<<"$run"
    out="$work/official-$device-$precision.json"
    say "official predictor on $device, $precision"
    rm -f "$out"
    # A failed run leaves no file, and its row says so; the reason is in the log above.
    py bench_official --model "$model" --clip "$clip" --threads "$threads" --clicks 0 --device "$device" \
      --precision "$precision" --memory-frames "$official_frames" "${objects_args[@]}" --out "$out" >&2 ||
      say "the official predictor failed on $device $precision"
    official_args+=(--official "official $precision=$out")
  done
else
  official_args+=(--official-skipped "no Python environment with PyTorch ($py_venv), so no official predictor")
fi

# --- the engine ----------------------------------------------------------------------------------------------------
# Mesa's and NVIDIA's Vulkan drivers want a runtime directory (the matte upsampling's GPU path).
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR}" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"
  chmod 700 "$XDG_RUNTIME_DIR"
  export XDG_RUNTIME_DIR
fi
say "engine"
"$bin" gpu --model "$model" --clip "$clip" "${providers[@]}" --threads "$threads" "${sizes[@]}" \
  "${official_args[@]}" --report "$report"
{
  if [ "$mode" = gpu ]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/card: /'
  fi
  echo "load: $(uptime)"
} | tee -a "$report"
echo "bench/gpu.sh: done in $((SECONDS - started)) s; table in $report"
