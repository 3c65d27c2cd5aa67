"""Model directories (symlinks to an exact set) each with one candidate fast set, for `bench precision`."""
import sys, os, shutil
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sam2export.fast import add_fast_set
src, out = sys.argv[1], sys.argv[2]
mm = {"op_types": ["MatMul", "Gemm"], "per_channel": False, "activation_products": False}
recipes = {
  "A_ie-aa_ma": {"image_encoder": {**mm, "activation_products": True}, "memory_attention": mm, "mask_decoder": None, "memory_encoder": None},
  "B_ie-aa": {"image_encoder": {**mm, "activation_products": True}, "memory_attention": None, "mask_decoder": None, "memory_encoder": None},
  "C_ie": {"image_encoder": mm, "memory_attention": None, "mask_decoder": None, "memory_encoder": None},
  "D_ie-pc": {"image_encoder": {**mm, "per_channel": True}, "memory_attention": None, "mask_decoder": None, "memory_encoder": None},
  "E_ma": {"image_encoder": None, "memory_attention": mm, "mask_decoder": None, "memory_encoder": None},
}
for name in sys.argv[3].split(","):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(src):
        if f == "fast" or os.path.exists(os.path.join(d, f)): continue
        os.symlink(os.path.abspath(os.path.join(src, f)), os.path.join(d, f))
    add_fast_set(d, recipes[name], log=lambda *a: None)
    print("made", d, flush=True)
