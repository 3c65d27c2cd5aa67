"""Export a SAM 2 checkpoint (or seeded random weights) to a model directory (docs/formats.md)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

from . import EXPORTER_VERSION
from .build import SIZES, FAMILIES, BuiltModel, build, sha256_file, weights_sha256
from .errors import UserError, friendly_main
from .graphs import GRAPH_NAMES, build_graphs

OPSET = 17


def graph_io(model) -> dict:
    """Names, dtypes and shapes of every graph's inputs and outputs; symbolic dimensions are strings."""
    s = model.image_size
    c, m = model.hidden_dim, model.mem_dim
    h = w = s // model.backbone_stride
    f32, i32, i64, b = "float32", "int32", "int64", "bool"
    feat = [1, c, h, w]
    hr0, hr1 = [1, c // 8, 4 * h, 4 * w], [1, c // 4, 2 * h, 2 * w]
    # The per-object graphs batch objects of one frame along "objects"; what is the frame's has a batch of 1.
    obj = "objects"
    obj_feat, obj_low = [obj, c, h, w], [obj, 1, 4 * h, 4 * w]
    io = {
        "image_encoder": (
            [("image", f32, [1, 3, s, s])],
            [("vision_features", f32, feat), ("vision_pos_enc", f32, feat),
             ("high_res_features_0", f32, hr0), ("high_res_features_1", f32, hr1)],
        ),
        "mask_decoder": (
            [("image_features", f32, obj_feat), ("high_res_features_0", f32, hr0), ("high_res_features_1", f32, hr1),
             ("point_coords", f32, [obj, "num_points", 2]), ("point_labels", i32, [obj, "num_points"]),
             ("mask_input", f32, obj_low), ("has_mask_input", b, [1]), ("multimask_output", b, [1])],
            [("low_res_masks", f32, obj_low), ("iou", f32, [obj, 1]), ("object_pointer", f32, [obj, c]),
             ("object_score_logits", f32, [obj, 1]), ("multimask_low_res_masks", f32, [obj, 3, 4 * h, 4 * w]),
             ("multimask_ious", f32, [obj, 3])],
        ),
        "memory_encoder": (
            [("vision_features", f32, feat), ("mask_logits", f32, obj_low), ("object_score_logits", f32, [obj, 1]),
             ("mask_from_points", b, [1])],
            [("memory_features", f32, [obj, m, h, w]), ("memory_pos_enc", f32, [1, m, h, w])],
        ),
        "memory_attention": (
            [("current_features", f32, feat), ("current_pos_enc", f32, feat),
             ("memory", f32, [obj, "num_memories", m, h, w]), ("memory_pos_enc", f32, [1, m, h, w]),
             ("memory_temporal_slot", i64, ["num_memories"]),
             ("object_pointers", f32, [obj, "num_pointers", c]), ("object_pointer_positions", f32, ["num_pointers"])],
            [("conditioned_features", f32, obj_feat)],
        ),
    }
    return {
        g: {
            "file": f"{g}.onnx",
            "inputs": [{"name": n, "dtype": d, "shape": sh} for n, d, sh in ins],
            "outputs": [{"name": n, "dtype": d, "shape": sh} for n, d, sh in outs],
        }
        for g, (ins, outs) in io.items()
    }


# Sizes of the symbolic dimensions in the example inputs the graphs are traced with. Each differs from 1 so
# that the tracer cannot take a dimension for a constant (a batch of 1 would be baked into reshapes).
EXAMPLE_DIMS = {"objects": 2, "num_points": 2, "num_memories": 2, "num_pointers": 3}

_TORCH_DTYPES = {"float32": torch.float32, "int32": torch.int32, "int64": torch.int64, "bool": torch.bool}


def example_inputs(spec: dict, dims: dict, generator: torch.Generator) -> tuple:
    """Random inputs for a graph; symbolic dimensions take their value from `dims`."""
    out = []
    for i in spec["inputs"]:
        shape = [dims[d] if isinstance(d, str) else d for d in i["shape"]]
        dt = _TORCH_DTYPES[i["dtype"]]
        if dt == torch.float32:
            out.append(torch.randn(shape, generator=generator))
        elif dt == torch.bool:
            out.append(torch.zeros(shape, dtype=torch.bool))
        else:
            out.append(torch.zeros(shape, dtype=dt))
    return tuple(out)


def export_graph(module, spec: dict, path: str, example: tuple) -> None:
    dynamic_axes = {}
    for io in spec["inputs"] + spec["outputs"]:
        axes = {k: d for k, d in enumerate(io["shape"]) if isinstance(d, str)}
        if axes:
            dynamic_axes[io["name"]] = axes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            path,
            input_names=[i["name"] for i in spec["inputs"]],
            output_names=[o["name"] for o in spec["outputs"]],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    restore_unused_inputs(path, spec)


def restore_unused_inputs(path: str, spec: dict) -> None:
    """Put back the inputs the exporter dropped because no node reads them.

    The legacy exporter removes an input the traced graph never uses: SAM 2.0's memory encoder ignores the
    object score (no `no_obj_embed_spatial`) and its memory attention ignores the pointer positions (no
    temporal encoding of pointers). docs/formats.md fixes every graph's inputs, and the engine and the
    verification feed them all, so the graph declares them again (ONNX Runtime accepts an unused input)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(path)
    present = {i.name: i for i in model.graph.input}
    missing = [i for i in spec["inputs"] if i["name"] not in present]
    if not missing:
        return
    elem = {"float32": TensorProto.FLOAT, "int32": TensorProto.INT32, "int64": TensorProto.INT64,
            "bool": TensorProto.BOOL}
    ordered = []
    for i in spec["inputs"]:
        if i["name"] in present:
            ordered.append(present[i["name"]])
        else:
            ordered.append(helper.make_tensor_value_info(i["name"], elem[i["dtype"]], i["shape"]))
    del model.graph.input[:]
    model.graph.input.extend(ordered)
    onnx.save(model, path)


def model_settings(model) -> dict:
    dec = model.sam_mask_decoder
    memory = {
        "num_maskmem": model.num_maskmem,
        "max_cond_frames_in_attn": model.max_cond_frames_in_attn,
        "memory_temporal_stride_for_eval": model.memory_temporal_stride_for_eval,
        "use_obj_ptrs_in_encoder": model.use_obj_ptrs_in_encoder,
        "max_obj_ptrs_in_encoder": model.max_obj_ptrs_in_encoder,
        "only_obj_ptrs_in_the_past_for_eval": model.only_obj_ptrs_in_the_past_for_eval,
        "add_tpos_enc_to_obj_ptrs": model.add_tpos_enc_to_obj_ptrs,
        "proj_tpos_enc_in_obj_ptrs": model.proj_tpos_enc_in_obj_ptrs,
        "use_signed_tpos_enc_to_obj_ptrs": model.use_signed_tpos_enc_to_obj_ptrs,
        "directly_add_no_mem_embed": model.directly_add_no_mem_embed,
        "sigmoid_scale_for_mem_enc": float(model.sigmoid_scale_for_mem_enc),
        "sigmoid_bias_for_mem_enc": float(model.sigmoid_bias_for_mem_enc),
        "binarize_mask_from_pts_for_mem_enc": model.binarize_mask_from_pts_for_mem_enc,
        "non_overlap_masks_for_mem_enc": model.non_overlap_masks_for_mem_enc,
        "memory_storage_dtype": "bfloat16",
        "no_obj_embed_spatial": model.no_obj_embed_spatial is not None,
        "maskmem_tpos_enc": "memory_attention.onnx",
        "obj_ptr_tpos_proj": "memory_attention.onnx",
    }
    decoder = {
        "multimask_output_in_sam": model.multimask_output_in_sam,
        "multimask_min_pt_num": model.multimask_min_pt_num,
        "multimask_max_pt_num": model.multimask_max_pt_num,
        "multimask_output_for_tracking": model.multimask_output_for_tracking,
        "use_multimask_token_for_obj_ptr": model.use_multimask_token_for_obj_ptr,
        "dynamic_multimask_via_stability": bool(dec.dynamic_multimask_via_stability),
        "dynamic_multimask_stability_delta": float(dec.dynamic_multimask_stability_delta),
        "dynamic_multimask_stability_thresh": float(dec.dynamic_multimask_stability_thresh),
        "pred_obj_scores": model.pred_obj_scores,
        "fixed_no_obj_ptr": model.fixed_no_obj_ptr,
        "soft_no_obj_ptr": model.soft_no_obj_ptr,
        "no_obj_score": -1024.0,
        "iou_prediction_use_sigmoid": model.iou_prediction_use_sigmoid,
        "use_mask_input_as_output_without_sam": model.use_mask_input_as_output_without_sam,
        "mask_as_output_scale": 20.0,
        "mask_as_output_bias": -10.0,
        "prev_mask_logits_clamp": 32.0,
    }
    predictor = {
        "fill_hole_area": model.fill_hole_area,
        "non_overlap_masks": model.non_overlap_masks,
        "add_all_frames_to_correct_as_cond": model.add_all_frames_to_correct_as_cond,
        "clear_non_cond_mem_around_input": model.clear_non_cond_mem_around_input,
    }
    return {"memory": memory, "decoder": decoder, "predictor": predictor}


def small_tensors(model) -> dict[str, np.ndarray]:
    t = {"no_mem_embed": model.no_mem_embed, "mask_downsample_weight": model.mask_downsample.weight,
         "mask_downsample_bias": model.mask_downsample.bias}
    if getattr(model, "no_obj_ptr", None) is not None:
        t["no_obj_ptr"] = model.no_obj_ptr
    return {k: v.detach().cpu().float().numpy() for k, v in t.items()}


def export_model_dir(built: BuiltModel, out_dir: str, *, fp16: bool = False, verify: bool = True, log=print) -> dict:
    """Write the model directory atomically (a temp dir renamed at the end) and return its manifest."""
    model = built.predictor
    graphs = build_graphs(model)
    io = graph_io(model)
    parent = os.path.dirname(os.path.abspath(out_dir)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        gen = torch.Generator().manual_seed(0)
        for name in GRAPH_NAMES:
            t0 = time.time()
            export_graph(graphs[name], io[name], os.path.join(tmp, io[name]["file"]), example_inputs(io[name], EXAMPLE_DIMS, gen))
            log(f"exported {name:17s} {os.path.getsize(os.path.join(tmp, io[name]['file'])) / 1e6:7.2f} MB  ({time.time() - t0:.1f} s)")
        for name in GRAPH_NAMES:
            io[name]["precision"] = "fp32"
        if fp16:
            from .fp16 import FP16_GRAPHS, convert_dir_to_fp16

            convert_dir_to_fp16(tmp, [io[g]["file"] for g in FP16_GRAPHS])
            for name in FP16_GRAPHS:
                io[name]["precision"] = "fp16"

        os.makedirs(os.path.join(tmp, "tensors"))
        tensors = {}
        for k, v in small_tensors(model).items():
            rel = f"tensors/{k}.npy"
            np.save(os.path.join(tmp, rel), v.astype(np.float32))
            tensors[k] = {"file": rel, "dtype": "float32", "shape": list(v.shape)}

        manifest = {
            "format": "sam2-rotoscope-model",
            "version": 1,
            "exporter_version": EXPORTER_VERSION,
            "family": built.family,
            "size": built.size,
            "config": built.config,
            "overrides": built.overrides,
            "source": built.source,
            "weights_sha256": weights_sha256(model),
            "precision": "fp16" if fp16 else "fp32",
            "image_size": model.image_size,
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
            "backbone_stride": model.backbone_stride,
            "hidden_dim": model.hidden_dim,
            "mem_dim": model.mem_dim,
            **model_settings(model),
            "graphs": io,
            "tensors": tensors,
        }
        if verify:
            from .verify import verify_model_dir

            manifest["verification"] = verify_model_dir(model, graphs, tmp, io, fp16=fp16, log=log)
        manifest["files"] = {}
        for rel in sorted([io[g]["file"] for g in GRAPH_NAMES] + [t["file"] for t in tensors.values()]):
            p = os.path.join(tmp, rel)
            manifest["files"][rel] = {"sha256": sha256_file(p), "bytes": os.path.getsize(p)}
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2, allow_nan=False)
            f.write("\n")
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


@friendly_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", help="an official SAM 2 / SAM 2.1 checkpoint (.pt)")
    p.add_argument("--size", required=True, help=f"one of {', '.join(SIZES)} ('test' is the shrunk test architecture)")
    p.add_argument("--family", default="sam2.1", help=f"one of {', '.join(FAMILIES)} (default sam2.1)")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights (with noise) instead of a checkpoint")
    p.add_argument("--seed", type=int, help="seed for --random-weights")
    p.add_argument("--noise-std", type=float, default=0.02, help="noise added to every parameter with --random-weights")
    p.add_argument("--object-score-bias", type=float, default=0.0, help="added to the object-score head's bias (random weights)")
    p.add_argument("--image-size", type=int, help="model input size (default: the config's, 256 for 'test')")
    p.add_argument("--fp16", action="store_true", help="store the graphs in float16 (inputs/outputs stay float32)")
    p.add_argument("--fast", action="store_true",
                   help="also write the fast sets (fast/: int8 graphs for the CPU, fast-gpu/: fp16 graphs for GPU "
                        "providers; precision fast; `py fast` adds them later)")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch self-check")
    p.add_argument("--out", required=True, help="the model directory to write")
    a = p.parse_args(argv)
    if a.random_weights and a.seed is None:
        raise UserError("--random-weights needs --seed N.")
    if not a.random_weights and a.checkpoint is None:
        raise UserError("Give --checkpoint PATH, or --random-weights --seed N.")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    built = build(
        family=a.family, size=a.size, checkpoint=None if a.random_weights else a.checkpoint,
        seed=a.seed if a.random_weights else None, noise_std=a.noise_std,
        object_score_bias=a.object_score_bias, image_size=a.image_size,
    )
    n = sum(p.numel() for p in built.predictor.parameters())
    print(f"{built.family} {built.size}: {n / 1e6:.2f}M parameters, input {built.predictor.image_size}")
    manifest = export_model_dir(built, a.out, fp16=a.fp16, verify=not a.no_verify)
    total = sum(f["bytes"] for f in manifest["files"].values())
    print(f"wrote {a.out} ({total / 1e6:.1f} MB)")
    v = manifest.get("verification")
    if v is not None and not v.get("passed", False):
        print("error: the self-check failed: the exported graphs do not reproduce PyTorch within tolerance.", file=sys.stderr)
        sys.exit(1)
    if a.fast:
        from .fast import add_sets

        add_sets(a.out)


if __name__ == "__main__":
    main()
