"""Weight-free graph templates, so that the engine builds a model directory from an official checkpoint without
Python (docs/formats.md, "Graph templates").

A template is the exporter's own four graphs with every weight-dependent initializer moved to an external data
file that the template does not ship, and a map saying which checkpoint tensor (or which concatenation of
checkpoint tensors, each as stored or transposed) fills each one. It is found, not assumed: the architecture is
exported twice from two seeds; initializers equal in both are weight-independent and stay in the graph (RoPE
tables, shapes); every other one must be reproduced from the first state dict by the map, and the map is then
checked against the second export byte for byte. Constant nodes are checked to be weight-independent too.

    bundle/exporter/py template --family sam2.1 --size tiny --out bundle/templates
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np
import torch

from . import EXPORTER_VERSION
from .build import FAMILIES, SIZES, build
from .errors import UserError, friendly_main
from .export import EXAMPLE_DIMS, example_inputs, export_graph, graph_io, model_settings

TEMPLATE_FORMAT = "sam2-rotoscope-template"
TEMPLATE_VERSION = 1
SEEDS = (11, 12)
SMALL_TENSORS = {
    "no_mem_embed": "no_mem_embed",
    "mask_downsample_weight": "mask_downsample.weight",
    "mask_downsample_bias": "mask_downsample.bias",
    "no_obj_ptr": "no_obj_ptr",
}
ALIGN = 64


def _state(model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().contiguous().numpy() for k, v in model.state_dict().items()}


def _views(state: dict) -> list[tuple[str, str, bytes]]:
    out = []
    for k, a in state.items():
        if a.dtype != np.float32:
            continue
        out.append((k, "identity", a.tobytes()))
        if a.ndim == 2:
            out.append((k, "transpose", np.ascontiguousarray(a.T).tobytes()))
    return out


def _find_parts(data: bytes, views) -> list[dict] | None:
    """The checkpoint tensors whose bytes, concatenated, are `data` (one tensor almost always)."""
    by_hash = {hashlib.sha256(b).digest(): (k, t) for k, t, b in views}
    whole = by_hash.get(hashlib.sha256(data).digest())
    if whole is not None:
        return [{"key": whole[0], "transform": whole[1]}]
    parts, pos = [], 0
    while pos < len(data):
        for k, t, b in views:
            if b and data[pos : pos + len(b)] == b:
                parts.append({"key": k, "transform": t})
                pos += len(b)
                break
        else:
            return None
    return parts


def _fill(parts, state) -> bytes:
    out = b""
    for p in parts:
        a = state[p["key"]]
        out += (np.ascontiguousarray(a.T) if p["transform"] == "transpose" else a).tobytes()
    return out


def make_template(family: str, size: str, out_root: str, log=print) -> str:
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import set_external_data

    from .graphs import GRAPH_NAMES, build_graphs

    tmp = tempfile.mkdtemp(prefix=".template-")
    try:
        exported, states = {}, {}
        for seed in SEEDS:
            built = build(family=family, size=size, seed=seed)
            model = built.predictor
            graphs, io = build_graphs(model), graph_io(model)
            gen = torch.Generator().manual_seed(0)
            for name in GRAPH_NAMES:
                export_graph(graphs[name], io[name], os.path.join(tmp, f"{name}.{seed}.onnx"), example_inputs(io[name], EXAMPLE_DIMS, gen))
            states[seed] = _state(model)
            exported[seed] = (built, model, io)
        built, model, io = exported[SEEDS[0]]
        state_a, state_b = states[SEEDS[0]], states[SEEDS[1]]
        views = _views(state_a)

        name_dir = f"{family}-{size}"
        out_dir = os.path.join(out_root, name_dir)
        stage = os.path.join(tmp, name_dir)
        os.makedirs(stage)
        graphs_json = {}
        for name in GRAPH_NAMES:
            a = onnx.load(os.path.join(tmp, f"{name}.{SEEDS[0]}.onnx"))
            b = onnx.load(os.path.join(tmp, f"{name}.{SEEDS[1]}.onnx"))
            consts_a = [n.SerializeToString() for n in a.graph.node if n.op_type == "Constant"]
            consts_b = [n.SerializeToString() for n in b.graph.node if n.op_type == "Constant"]
            if consts_a != consts_b:
                raise UserError(f"The {name} graph has weight-dependent Constant nodes; it cannot be made a template.")
            init_b = {i.name: i for i in b.graph.initializer}
            data_file = f"{name}.onnx.data"
            offset, entries = 0, []
            for init in a.graph.initializer:
                va = numpy_helper.to_array(init)
                other = init_b.get(init.name)
                if other is None:
                    raise UserError(f"The {name} graph's initializers differ between two exports ({init.name}).")
                vb = numpy_helper.to_array(other)
                if va.dtype == vb.dtype and va.shape == vb.shape and va.tobytes() == vb.tobytes():
                    continue  # weight-independent: stays in the template
                data = np.ascontiguousarray(va).tobytes()
                parts = _find_parts(data, views) if va.dtype == np.float32 else None
                if parts is None:
                    raise UserError(f"The {name} graph's initializer {init.name} {list(va.shape)} is computed from "
                                    "weights in a way the template cannot map to checkpoint tensors.")
                if _fill(parts, state_b) != np.ascontiguousarray(vb).tobytes():
                    raise UserError(f"The map of {name}'s initializer {init.name} does not hold for a second seed.")
                offset = (offset + ALIGN - 1) // ALIGN * ALIGN
                entries.append({"name": init.name, "shape": list(va.shape), "offset": offset, "bytes": len(data),
                                "parts": parts})
                if not init.HasField("raw_data"):
                    init.raw_data = data
                    del init.float_data[:]
                set_external_data(init, location=data_file, offset=offset, length=len(data))
                init.ClearField("raw_data")
                init.data_location = onnx.TensorProto.EXTERNAL
                offset += len(data)
            onnx.save(a, os.path.join(stage, f"{name}.onnx"))
            graphs_json[name] = {"file": f"{name}.onnx", "data_file": data_file, "data_bytes": offset,
                                 "initializers": entries}
            log(f"template {name:17s} {len(entries):4d} weights from the checkpoint, {offset / 1e6:7.2f} MB; "
                f"graph {os.path.getsize(os.path.join(stage, f'{name}.onnx')) / 1e6:.2f} MB")

        manifest = {
            "format": "sam2-rotoscope-model",
            "version": 1,
            "exporter_version": EXPORTER_VERSION,
            "family": built.family,
            "size": built.size,
            "config": built.config,
            "overrides": built.overrides,
            "precision": "fp32",
            "image_size": model.image_size,
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
            "backbone_stride": model.backbone_stride,
            "hidden_dim": model.hidden_dim,
            "mem_dim": model.mem_dim,
            **model_settings(model),
            "graphs": {g: dict(io[g], precision="fp32") for g in GRAPH_NAMES},
        }
        tensors = {k: key for k, key in SMALL_TENSORS.items() if key in state_a}
        template = {
            "format": TEMPLATE_FORMAT,
            "version": TEMPLATE_VERSION,
            "family": family,
            "size": size,
            "checkpoint_keys": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in sorted(state_a.items())},
            "graphs": graphs_json,
            "tensors": tensors,
            "manifest": manifest,
        }
        with open(os.path.join(stage, "template.json"), "w") as f:
            json.dump(template, f, indent=1, allow_nan=False)
            f.write("\n")
        os.makedirs(out_root, exist_ok=True)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(stage, out_dir)
        return out_dir
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_checkpoint(built, path: str) -> None:
    """A checkpoint in the official layout ({"model": state_dict}, PyTorch's zip format)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in built.predictor.state_dict().items()}
    torch.save({"model": state}, path)


@friendly_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="sam2.1", help=f"one of {', '.join(FAMILIES)}")
    p.add_argument("--size", required=True, help=f"one of {', '.join(SIZES)}")
    p.add_argument("--out", required=True, help="the templates folder (bundle/templates)")
    p.add_argument("--save-random-checkpoint", metavar="PATH",
                   help="also write a checkpoint of seeded random weights (--seed) in the official layout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-std", type=float, default=0.02)
    p.add_argument("--object-score-bias", type=float, default=0.0)
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out = make_template(a.family, a.size, a.out)
    print(f"wrote {out}")
    if a.save_random_checkpoint:
        built = build(family=a.family, size=a.size, seed=a.seed, noise_std=a.noise_std,
                      object_score_bias=a.object_score_bias)
        save_checkpoint(built, a.save_random_checkpoint)
        print(f"wrote {a.save_random_checkpoint}")


if __name__ == "__main__":
    main()
