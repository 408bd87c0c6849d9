"""Where does ox.compile's decode time go vs hand-written mx.compile? (GPU diagnostic)"""
import sys, time, statistics
import numpy as np, mlx.core as mx
import oxcore as ox
from oxcore.cli.bench_mlx import _weights, _ox_block, _mx_block, _on
from oxcore.autotune import interleaved

import os
dim, heads, kvh = int(os.environ.get("DIM", 4096)), 32, 8
for dtn in sys.argv[1:] or ["float32", "bfloat16"]:
    dt = ox.dtype(dtn)
    rng = np.random.default_rng(0)
    ffn = 64 * round(8 * dim / 3 / 64)
    W = _weights(np, rng, dim, heads, kvh, ffn, dt.numpy)
    hd = dim // heads
    S = 512
    x = rng.standard_normal((1, 1, dim)).astype(dt.numpy)
    kc = rng.standard_normal((1, kvh, S, hd)).astype(dt.numpy)
    vc = rng.standard_normal((1, kvh, S, hd)).astype(dt.numpy)
    host = {"x": x, "kc": kc, "vc": vc, **W}
    b = "metal_fused"
    dev = {k: _on(b, [ox.asarray(v)])[0] for k, v in host.items()}
    mxv = {k: v._node.buf for k, v in dev.items()}
    off = _on(b, [ox.asarray(np.array(S, np.int32))])[0]
    offm = off._node.buf
    comp = mx.compile(lambda Wm, xx, k, v, o: _mx_block(mx, Wm, xx, k, v, o, heads, kvh))
    def block(Wd, xx, k, v, o):
        return _ox_block(ox, Wd, xx, k, v, o, heads, kvh)
    oc = ox.compile(block)
    args = [dev, dev["x"], dev["kc"], dev["vc"], off]
    with ox.use(b):
        for _ in range(3):
            oc(*args).eval()
    rp = next(iter(oc._cache.values()))
    print(dtn, "steps", len(rp.steps), "consts", len(rp.consts), "slots", rp.nslots)
    # the single segment step, called directly
    fn, ins, outs, _ = rp.steps[0]
    vals = [None] * rp.nslots
    from oxcore._compile import _split
    tree, leaves = _split(tuple(args), {})
    for s, i in rp.arg_slots:
        vals[s] = leaves[i]._node.buf
    for s, bb in rp.consts:
        vals[s] = bb
    seg_in = [vals[i] for i in ins]
    print("segment inputs", len(seg_in), [getattr(a, "shape", None) for a in seg_in][:20])
    def hand(): mx.eval(comp(mxv, mxv["x"], mxv["kc"], mxv["vc"], offm))
    def segment(): fn(seg_in)
    def replay():
        with ox.use(b):
            return oc(*args)
    def replay_nouse():
        return oc(*args)
    calls = {"hand mx.compile": hand, "segment step": segment, "ox.compile": replay, "ox.compile no use()": replay_nouse}
    for _ in range(20):
        for c in calls.values(): c()
    res = interleaved(list(calls.values()), min_rounds=300, max_rounds=300)
    for name, st in zip(calls, res):
        print(f"{dtn:9s} {name:22s} median {st.median_us:8.1f} us  p10 {st.p10_us:8.1f}")
    # CPU-side overhead with no GPU wait: time replay dispatch only (mx.eval inside), so instead
    # measure python overhead = replay - segment
    t0 = time.perf_counter(); n = 200
    for _ in range(n): tree, leaves = _split(tuple(args), {}); oc._key(tree, leaves)
    print(f"{dtn} split+key: {(time.perf_counter()-t0)/n*1e6:.1f} us")
