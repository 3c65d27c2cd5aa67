"""Add the fast graph sets to a model directory (docs/formats.md, "Fast set"): `fast/` (int8 graphs, for the CPU)
and `fast-gpu/` (float16 graphs, for GPU providers), each with its `manifest.json`. The engine runs them at
precision fast (`sam2-rotoscope track --precision fast`, the plug-in's Precision parameter), the GPU set where the
graphs run on a GPU provider and the CPU set elsewhere.

The set is made from the directory's own exact graphs with ONNX Runtime's dynamic quantization, so it needs
neither PyTorch nor the checkpoint: `bundle/exporter/py fast --model DIR` works on any model directory, one
built from a checkpoint by the engine included. `manifest.json` is left byte for byte as it was (traces and track
caches name the model by its hash); the set records that hash and is refused by the engine once the model is
exported again.

Which graphs are quantized, and how, was chosen by measurement (docs/precision.md): int8 MatMuls in the image
encoder (weights per tensor: about 2× on that graph; since exporter 0.2.0 its attentions are fused
`MultiHeadAttention` nodes, which stay float32, at the same speed as the int8 activation × activation products
they replace).
Memory attention stays exact: its time is the fused cross-attention, which dynamic quantization leaves in float32,
so int8 projections gained ≈ 5 % (within the noise) for more deviation. The mask decoder and memory encoder stay
exact too — they cost little, and the decoder writes the logits the mask is cut from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile

from . import EXPORTER_VERSION
from .errors import UserError, friendly_main

FAST_DIR = "fast"
FAST_GPU_DIR = "fast-gpu"
FAST_FORMAT = "sam2-rotoscope-fast-set"
GRAPHS = ("image_encoder", "mask_decoder", "memory_encoder", "memory_attention")

# Per graph: None keeps the exact graph; a dict is quantize_dynamic's options.
RECIPE = {
    "image_encoder": {"op_types": ["MatMul", "Gemm"], "per_channel": False, "activation_products": True},
    "memory_attention": None,
    "mask_decoder": None,
    "memory_encoder": None,
}

# The GPU set: float16 where fp16.py's FP16_GRAPHS says (the memory encoder stays exact, see there). On a GPU
# provider fp16 runs on the tensor cores (issue 14's H100: 24.2 → 19.5 ms a frame, outputs within 9e-3 of fp32);
# on the CPU provider it is slower than float32, hence a set of its own.
GPU_RECIPE = {
    "image_encoder": {"precision": "fp16"},
    "memory_attention": {"precision": "fp16"},
    "mask_decoder": {"precision": "fp16"},
    "memory_encoder": None,
}


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def quantize(src: str, dst: str, options: dict) -> dict:
    """Dynamic int8 quantization of one graph; returns how many nodes of each kind it has after."""
    import collections
    import logging

    import onnx
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer warns at length that the model was not pre-processed; the result is measured instead.
    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(
        src,
        dst,
        op_types_to_quantize=list(options["op_types"]),
        per_channel=bool(options["per_channel"]),
        weight_type=QuantType.QInt8,
        extra_options={
            # Memory attention's fused com.microsoft.MultiHeadAttention has no ONNX shape inference; its
            # outputs are float32.
            "DefaultTensorType": TensorProto.FLOAT,
            "MatMulConstBOnly": not options["activation_products"],
        },
    )
    counts = collections.Counter(n.op_type for n in onnx.load(dst, load_external_data=False).graph.node)
    return {k: counts[k] for k in ("MatMulInteger", "MatMul", "Gemm", "DynamicQuantizeLinear") if counts[k]}


def add_fast_set(model_dir: str, recipe: dict | None = None, log=print) -> dict:
    """Write `model_dir/fast`, the CPU set (replacing an earlier set atomically), and return its manifest."""
    import onnxruntime

    recipe = RECIPE if recipe is None else recipe
    tool = {
        "tool": f"onnxruntime.quantization.quantize_dynamic (onnxruntime {onnxruntime.__version__})",
        "weights": "int8, symmetric",
        "activations": "uint8, per tensor, at run time",
    }

    def make(name, src, dst, options):
        nodes = quantize(src, dst, options)
        log(f"fast set: {name} → int8 ({nodes}), {os.path.getsize(dst) / 1e6:.2f} MB")
        return "int8_dynamic", {**options, "nodes": nodes}

    return _write_set(model_dir, FAST_DIR, recipe, make, tool)


def add_gpu_fast_set(model_dir: str, log=print) -> dict:
    """Write `model_dir/fast-gpu`, the GPU set (replacing an earlier set atomically), and return its manifest."""
    import onnxruntime

    from .fp16 import convert_to_fp16

    tool = {
        "tool": f"onnxruntime.transformers.float16.convert_float_to_float16 (onnxruntime {onnxruntime.__version__})",
        "inputs_outputs": "float32 (keep_io_types)",
        "kept_float32": ["Resize", "Range", "CumSum"],
    }

    def make(name, src, dst, options):
        convert_to_fp16(src, dst)
        log(f"GPU fast set: {name} → fp16, {os.path.getsize(dst) / 1e6:.2f} MB")
        return "fp16", options

    return _write_set(model_dir, FAST_GPU_DIR, GPU_RECIPE, make, tool)


def _write_set(model_dir: str, set_dir: str, recipe: dict, make, tool: dict) -> dict:
    """Write the set `set_dir` of `model_dir`: `make(name, src, dst, options)` writes each changed graph and
    returns its precision and what the recipe records of it; graphs whose recipe is None stay exact."""
    manifest_path = os.path.join(model_dir, "manifest.json")
    if not os.path.isfile(manifest_path):
        raise UserError(f"The model directory {model_dir} has no manifest.json; export one with bundle/exporter first.")
    with open(manifest_path, "rb") as f:
        manifest_bytes = f.read()
    manifest = json.loads(manifest_bytes)
    if manifest.get("format") != "sam2-rotoscope-model":
        raise UserError(f"{manifest_path} is not a model manifest.")
    tmp = tempfile.mkdtemp(prefix=f".{set_dir}-", dir=model_dir)
    try:
        graphs, files, made = {}, {}, {}
        for name in GRAPHS:
            exact = manifest["graphs"][name]["file"]
            options = recipe.get(name)
            if options is None:
                graphs[name] = {"file": exact, "precision": "fp32"}
                continue
            rel = f"{set_dir}/{name}.onnx"
            dst = os.path.join(tmp, f"{name}.onnx")
            precision, made[name] = make(name, os.path.join(model_dir, exact), dst, options)
            graphs[name] = {"file": rel, "precision": precision}
            files[rel] = {"sha256": sha256_file(dst), "bytes": os.path.getsize(dst)}
        fast_manifest = {
            "format": FAST_FORMAT,
            "version": 1,
            "exporter_version": EXPORTER_VERSION,
            "model_manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
            "graphs": graphs,
            "files": files,
            "recipe": {**tool, "graphs": made},
        }
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(fast_manifest, f, indent=2, allow_nan=False)
            f.write("\n")
        final = os.path.join(model_dir, set_dir)
        old = None
        if os.path.exists(final):
            old = tempfile.mkdtemp(prefix=f".{set_dir}-old-", dir=model_dir)
            os.replace(final, os.path.join(old, set_dir))
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return fast_manifest


@friendly_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the model directory (holds manifest.json)")
    p.add_argument("--sets", choices=("both", "cpu", "gpu"), default="both",
                   help="which sets to write: fast/ (int8, CPU), fast-gpu/ (fp16, GPU providers) or both (default)")
    a = p.parse_args(argv)
    add_sets(a.model, a.sets)


def add_sets(model_dir: str, sets: str = "both", log=print) -> None:
    """The sets `sets` names ("both", "cpu" or "gpu"), each reported with its size."""
    for which, add, set_dir in (("cpu", add_fast_set, FAST_DIR), ("gpu", add_gpu_fast_set, FAST_GPU_DIR)):
        if sets in ("both", which):
            m = add(model_dir, log=log)
            total = sum(f["bytes"] for f in m["files"].values())
            log(f"wrote {os.path.join(model_dir, set_dir)} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
