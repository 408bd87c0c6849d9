import os, time, numpy as np, mlx.core as mx, oxcore as ox
from oxcore.cli.bench_mlx import _weights, _ox_block, _mx_block, _on
dim, heads, kvh = 64, 4, 2
W = _weights(np, np.random.default_rng(0), dim, heads, kvh, 128, np.float32)
S=16; hd=dim//heads
host = {"x": np.ones((1,1,dim),np.float32), "kc": np.ones((1,kvh,S,hd),np.float32), "vc": np.ones((1,kvh,S,hd),np.float32), **W}
b="metal_fused"
dev = {k: _on(b, [ox.asarray(v)])[0] for k, v in host.items()}
mxv = {k: v._node.buf for k, v in dev.items()}
off = _on(b, [ox.asarray(np.array(S, np.int32))])[0]
comp = mx.compile(lambda Wm, xx, k, v, o: _mx_block(mx, Wm, xx, k, v, o, heads, kvh))
from oxcore_metal_fused._backend import FusedBackend
SEGS=[]
_orig=FusedBackend.compile_segment
def _cs(self, seg):
    SEGS.append(seg); return _orig(self, seg)
FusedBackend.compile_segment=_cs
oc = ox.compile(lambda Wd, xx, k, v, o: _ox_block(ox, Wd, xx, k, v, o, heads, kvh))
args = [dev, dev["x"], dev["kc"], dev["vc"], off]
with ox.use(b):
    for _ in range(5): oc(*args)
rp = next(iter(oc._cache.values()))
fn, ins, outs, _ = rp.steps[0]
vals=[None]*rp.nslots
from oxcore._compile import _split
tree, leaves = _split(tuple(args), {})
for s,i in rp.arg_slots: vals[s]=leaves[i]._node.buf
seg_in=[vals[i] for i in ins]
def t(f, n=3000):
    for _ in range(200): f()
    best=[]
    for r in range(5):
        t0=time.perf_counter()
        for _ in range(n): f()
        best.append((time.perf_counter()-t0)/n*1e6)
    return min(best)
print("hand", t(lambda: mx.eval(comp(mxv, mxv["x"], mxv["kc"], mxv["vc"], off._node.buf))))
print("segment", t(lambda: fn(seg_in)))
print("replay", t(lambda: oc(*args)))
import cProfile, pstats
cProfile.run("for _ in range(3000): oc(*args)", "/tmp/prof.out")
pstats.Stats("/tmp/prof.out").sort_stats("tottime").print_stats(15)

import collections, re
def ops(path):
    txt=open(path).read()
    return collections.Counter(re.findall(r'label ="([A-Za-z_]+)', txt) or re.findall(r'label="([A-Za-z]+)', txt))
y_hand = _mx_block(mx, mxv, mxv["x"], mxv["kc"], mxv["vc"], off._node.buf, heads, kvh)
mx.export_to_dot("/tmp/hand.dot", y_hand)
seg=SEGS[-1]
print(seg.explain() if hasattr(seg,"explain") else [i.op for i in seg.instrs])
y_ox = seg.interpreter()(list(seg_in))
mx.export_to_dot("/tmp/ox.dot", *y_ox)
print("hand", ops("/tmp/hand.dot")); print("ox  ", ops("/tmp/ox.dot"))
