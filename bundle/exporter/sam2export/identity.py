"""Bit identity of two model directories of the same weights: the exporter's, and one built from the checkpoint (the engine, from a graph template).

    bundle/exporter/py identity EXPORTED_DIR BUILT_DIR

Every initializer's bytes, every graph without its initializers, and the ONNX Runtime outputs of each graph on random
inputs (one object, one memory frame and no pointer; three objects, the full bank and 16 pointers) must be identical."""
import sys, os, numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper
if len(sys.argv) != 3:
    sys.exit("usage: bundle/exporter/py identity EXPORTED_DIR BUILT_DIR")
py_dir, rs_dir = sys.argv[1], sys.argv[2]
names = ["image_encoder", "mask_decoder", "memory_encoder", "memory_attention"]
for g in names:
    a = onnx.load(os.path.join(py_dir, g + ".onnx"))
    b = onnx.load(os.path.join(rs_dir, g + ".onnx"))  # external data loaded from <g>.onnx.data
    ia = {i.name: numpy_helper.to_array(i) for i in a.graph.initializer}
    ib = {i.name: numpy_helper.to_array(i) for i in b.graph.initializer}
    assert list(ia) == list(ib), g
    bad = [n for n in ia if ia[n].dtype != ib[n].dtype or ia[n].shape != ib[n].shape or ia[n].tobytes() != ib[n].tobytes()]
    a.graph.ClearField("initializer"); b.graph.ClearField("initializer")
    same_graph = a.SerializeToString() == b.SerializeToString()
    print(f"{g}: {len(ia)} initializers, {len(bad)} differ; graph without initializers identical: {same_graph}")
    assert not bad and same_graph
import json
m = json.load(open(os.path.join(py_dir, "manifest.json")))
rng = np.random.default_rng(0)
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.log_severity_level = 3
def feeds(spec, dims):
    out = {}
    for i in spec["inputs"]:
        shape = [dims[d] if isinstance(d, str) else d for d in i["shape"]]
        if i["dtype"] == "float32": out[i["name"]] = rng.standard_normal(shape).astype(np.float32)
        elif i["dtype"] == "bool": out[i["name"]] = np.array([True] * int(np.prod(shape))).reshape(shape)
        elif i["dtype"] == "int64": out[i["name"]] = np.zeros(shape, np.int64)
        else: out[i["name"]] = np.ones(shape, np.int32)
    return out
for g in names:
    spec = m["graphs"][g]
    sa = ort.InferenceSession(os.path.join(py_dir, spec["file"]), so, providers=["CPUExecutionProvider"])
    sb = ort.InferenceSession(os.path.join(rs_dir, spec["file"]), so, providers=["CPUExecutionProvider"])
    for dims in ({"objects": 1, "num_points": 2, "num_memories": 1, "num_pointers": 0},
                 {"objects": 3, "num_points": 5, "num_memories": 7, "num_pointers": 16}):
        f = feeds(spec, dims)
        if "object_pointer_positions" in f: f["object_pointer_positions"] = np.linspace(0, 1, dims["num_pointers"]).astype(np.float32)
        if "memory_temporal_slot" in f: f["memory_temporal_slot"] = np.arange(dims["num_memories"], dtype=np.int64) % 7
        ra, rb = sa.run(None, f), sb.run(None, f)
        same = all(x.tobytes() == y.tobytes() for x, y in zip(ra, rb))
        print(f"{g} {dims}: outputs bit-identical: {same}")
        assert same
print("IDENTICAL")
