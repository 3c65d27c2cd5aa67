"""Float16 graphs for GPU execution providers: weights and arithmetic in fp16, inputs/outputs kept float32 so
the engine's code path is the same for both precisions."""

from __future__ import annotations

import os

import onnx

# The memory encoder stays fp32: it binarizes the upsampled mask at 0, and fp16 rounding of the logits flips
# pixels near the edge, which moves memory features by up to 0.3 (measured) for no speed gain (~1 ms on GPU).
FP16_GRAPHS = ("image_encoder", "mask_decoder", "memory_attention")


def convert_to_fp16(src: str, dst: str) -> None:
    """The graph at `src` with float16 weights and arithmetic, written to `dst` (may be `src`)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(src)
    # Resize and the box/point arithmetic on coordinates stay in fp32: their inputs are pixel positions
    # (up to 1024) whose fp16 rounding would move points by up to half a pixel.
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=["Resize", "Range", "CumSum"])
    onnx.save(converted, dst)


def convert_dir_to_fp16(model_dir: str, files: list[str]) -> None:
    for rel in files:
        path = os.path.join(model_dir, rel)
        convert_to_fp16(path, path)
