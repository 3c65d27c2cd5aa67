"""Make per-graph variants of the tiny 1024 set: int8 dynamic (several flavours), fp16."""
import os, sys, collections, onnx
from onnxruntime.quantization import quantize_dynamic, QuantType
SRC = sys.argv[1]; OUT = sys.argv[2]
graphs = sys.argv[3].split(",") if len(sys.argv) > 3 else ["image_encoder","memory_attention","mask_decoder","memory_encoder"]
os.makedirs(OUT, exist_ok=True)
def count(path):
    m = onnx.load(path, load_external_data=False)
    return collections.Counter(n.op_type for n in m.graph.node)
for g in graphs:
    src = f"{SRC}/{g}.onnx"
    flavours = {
        "int8": dict(op_types_to_quantize=["MatMul","Gemm"], per_channel=False, extra_options={"DefaultTensorType": 1}),
        "int8pc": dict(op_types_to_quantize=["MatMul","Gemm"], per_channel=True, extra_options={"DefaultTensorType": 1}),
        "int8aa": dict(op_types_to_quantize=["MatMul","Gemm"], per_channel=False, extra_options={"MatMulConstBOnly": False, "DefaultTensorType": 1}),
        "int8conv": dict(op_types_to_quantize=["MatMul","Gemm","Conv"], per_channel=False, extra_options={"DefaultTensorType": 1}),
    }
    for name, kw in flavours.items():
        dst = f"{OUT}/{g}.{name}.onnx"
        if os.path.exists(dst): continue
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, **kw)
            c = count(dst)
            print(g, name, {k: v for k, v in c.items() if k in ("MatMul","MatMulInteger","DynamicQuantizeLinear","Gemm","Conv","ConvInteger","DynamicQuantizeMatMul")}, flush=True)
        except Exception as e:
            print(g, name, "FAILED", e, flush=True)
    dst = f"{OUT}/{g}.fp16.onnx"
    if not os.path.exists(dst):
        from onnxruntime.transformers.float16 import convert_float_to_float16
        m = onnx.load(src)
        try:
            c = convert_float_to_float16(m, keep_io_types=True, op_block_list=["Resize","Range","CumSum"])
            onnx.save(c, dst); print(g, "fp16 ok", flush=True)
        except Exception as e:
            print(g, "fp16 FAILED", e, flush=True)
