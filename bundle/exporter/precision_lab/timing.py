"""Time per-graph variants with ORT (2 threads, no spinning, like the engine), interleaved, and compare outputs."""
import os, sys, time, json, statistics, argparse
import numpy as np, onnxruntime as ort
p = argparse.ArgumentParser()
p.add_argument("--src"); p.add_argument("--var"); p.add_argument("--graph"); p.add_argument("--variants")
p.add_argument("--rounds", type=int, default=3); p.add_argument("--runs", type=int, default=2)
p.add_argument("--threads", type=int, default=2); p.add_argument("--mem", type=int, default=7); p.add_argument("--ptr", type=int, default=8)
a = p.parse_args()
def cpu():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]; t = os.times()
    return sum(v), v[3]+v[4], round((t.user+t.system)*os.sysconf("SC_CLK_TCK"))
rng = np.random.default_rng(0)
S, C, M, H = 1024, 256, 64, 64
inputs = {
 "image_encoder": {"image": rng.standard_normal((1,3,S,S), dtype=np.float32)},
 "memory_attention": {"current_features": rng.standard_normal((1,C,H,H), dtype=np.float32),
   "current_pos_enc": rng.standard_normal((1,C,H,H), dtype=np.float32),
   "memory": rng.standard_normal((1,a.mem,M,H,H), dtype=np.float32),
   "memory_pos_enc": rng.standard_normal((1,M,H,H), dtype=np.float32),
   "memory_temporal_slot": np.array([0]+list(range(1,a.mem)), dtype=np.int64)[:a.mem],
   "object_pointers": rng.standard_normal((1,a.ptr,C), dtype=np.float32),
   "object_pointer_positions": np.arange(a.ptr, dtype=np.float32)},
 "mask_decoder": {"image_features": rng.standard_normal((1,C,H,H), dtype=np.float32),
   "high_res_features_0": rng.standard_normal((1,C//8,4*H,4*H), dtype=np.float32),
   "high_res_features_1": rng.standard_normal((1,C//4,2*H,2*H), dtype=np.float32),
   "point_coords": np.array([[[512.,512.],[0.,0.]]], dtype=np.float32), "point_labels": np.array([[1,-1]], dtype=np.int32),
   "mask_input": np.zeros((1,1,4*H,4*H), np.float32), "has_mask_input": np.array([False]), "multimask_output": np.array([False])},
 "memory_encoder": {"vision_features": rng.standard_normal((1,C,H,H), dtype=np.float32),
   "mask_logits": rng.standard_normal((1,1,4*H,4*H), dtype=np.float32)*5, "object_score_logits": np.array([[3.]], np.float32),
   "mask_from_points": np.array([False])},
}[a.graph]
def session(path):
    o = ort.SessionOptions(); o.intra_op_num_threads = a.threads; o.inter_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0"); o.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
paths = {"fp32": f"{a.src}/{a.graph}.onnx"}
for v in a.variants.split(","):
    if v != "fp32": paths[v] = f"{a.var}/{a.graph}.{v}.onnx"
sess, ref, outs = {}, None, {}
for v, pth in paths.items():
    try:
        s = session(pth); o = s.run(None, inputs); sess[v] = s; outs[v] = o
    except Exception as e:
        print(f"{a.graph} {v}: FAILED {str(e)[:300]}", flush=True)
times = {v: [] for v in sess}
c0 = cpu()
for r in range(a.rounds):
    for v, s in sess.items():
        for _ in range(a.runs):
            t = time.perf_counter(); s.run(None, inputs); times[v].append(time.perf_counter() - t)
c1 = cpu(); total = c1[0]-c0[0]; others = max(0, total-(c1[1]-c0[1])-(c1[2]-c0[2]))
names = [o.name for o in sess["fp32"].get_outputs()]
for v in sess:
    dev = max(float(np.max(np.abs(x - y))) for x, y in zip(outs[v], outs["fp32"]))
    scale = max(float(np.max(np.abs(y))) for y in outs["fp32"])
    print(f"{a.graph:17s} {v:9s} median {statistics.median(times[v])*1e3:8.1f} ms  min {min(times[v])*1e3:8.1f}  max|d| {dev:.4g} (max|ref| {scale:.3g})", flush=True)
print(f"  others used {others/max(1,total):.0%} of the CPU; loadavg {open('/proc/loadavg').read().split()[:3]}", flush=True)
