"""The ggml ops key their autotune entries on the ggml type (``tune_attrs=("ggml_type",)``): two
types whose bytes fall in one shape bucket (Gemma's Q5_0 attn_q and Q4_K attn_output) get
separate entries and separate choices, pinned or not, and ``oxcore.autotune`` measures each
type on its own."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

import oxcore as ox
from oxcore import _plan, _profile, autotune
from oxcore.extend import manager, reload_plugins
from oxcore_io_gguf.blocks import dequantize_reference, random_blocks

#: Gemma 3 270M's pair: the same dtypes and shape buckets, different types
PAIR = (("Q5_0", (1024, 640)), ("Q4_K", (640, 1024)))
KERNEL = "cpu_numpy.ggml_dequantize.gguf"


@pytest.fixture
def gguf_only(monkeypatch, tmp_path):
    """cpu_numpy and io_gguf alone (no kernel plugins), unpinned, and an empty profile file."""
    monkeypatch.setenv("OXCORE_LOAD_PLUGINS", "cpu_numpy,io_gguf")
    monkeypatch.delenv("OXCORE_BACKENDS", raising=False)
    monkeypatch.setenv("OXCORE_PROFILE", str(tmp_path / "profile.json"))
    reload_plugins()
    _profile.reload()
    _plan.clear_cache()
    try:
        yield tmp_path / "profile.json"
    finally:
        monkeypatch.undo()
        reload_plugins()
        _profile.reload()
        _plan.clear_cache()


def _raw(t, shape, seed=None):
    return random_blocks(t, shape, np.random.default_rng(seed)).reshape(-1)


def _deq(raw, t, shape):
    return ox.build("ggml_dequantize", ox.asarray(raw), ggml_type=t, shape=shape, dtype=ox.float32)


def _node(y, op="ggml_dequantize"):
    with _profile.active(None):
        (p,) = [p for p in ox.explain(y).nodes if p.op == op]
    return p


def _kernel():
    return manager().backends["cpu_numpy"].kernels_for("ggml_dequantize")[0]


def test_the_pair_shares_a_bucket_but_not_an_entry(gguf_only):
    nodes = [_node(_deq(_raw(t, s), t, s)) for t, s in PAIR]
    a, b = nodes
    assert _profile.bucket_of(a.inputs, a) == _profile.bucket_of(b.inputs, b)  # NOTE: the old collision
    prof = _profile.Profile()
    for p, us in zip(nodes, (11.0, 22.0)):
        prof.add(_kernel(), p, us)
    assert sorted(e["attrs"] for e in prof.data["kernels"].values()) == ["ggml_type=Q4_K", "ggml_type=Q5_0"]
    assert (prof.lookup(_kernel(), a), prof.lookup(_kernel(), b)) == (11.0, 22.0)


def test_matmul_entries_are_keyed_on_the_type_too(gguf_only):
    from oxcore._tune_cases import Case

    prof = _profile.Profile()
    dec = _profile.DecomposedKernel.of("ggml_matmul", "cpu_numpy")
    nodes = []
    for (t, (n, k)), us in zip(PAIR, (5.0, 50.0)):
        raw = _raw(t, (n, k))
        pn = Case("ggml_matmul", {"ggml_type": t, "shape": (n, k)}, [((1, 1, k), ox.float32), (raw.shape, ox.uint8)],
                  (1, 1, n), ox.float32).plan_node()
        prof.add(dec, pn, us, device=manager().backends["cpu_numpy"].device)
        nodes.append(pn)
    assert len({_profile.bucket_of(p.inputs, p) for p in nodes}) == 1
    assert sorted(e["attrs"] for e in prof.data["kernels"].values()) == ["ggml_type=Q4_K", "ggml_type=Q5_0"]
    assert [prof.lookup(dec, p) for p in nodes] == [5.0, 50.0]


@pytest.mark.parametrize("pinned", [False, True])
def test_each_type_of_the_pair_gets_its_own_choice(gguf_only, pinned):
    (t5, s5), (t4, s4) = PAIR
    prof = _profile.Profile()
    dec = _profile.DecomposedKernel.of("ggml_dequantize", "cpu_numpy")
    dev = manager().backends["cpu_numpy"].device
    # NOTE: planted: the kernel wins for Q5_0, the decomposition for Q4_K, at the same bucket
    for (t, s), (k_us, d_us) in zip(PAIR, ((10.0, 100.0), (100.0, 10.0))):
        p = _node(_deq(_raw(t, s), t, s))
        prof.add(_kernel(), p, k_us)
        prof.add(dec, p, d_us, device=dev)
    pin = ox.use("cpu_numpy") if pinned else contextlib.nullcontext()
    with _profile.active(prof), pin:
        for seed in range(2):  # fresh blocks; both paths must give gguf-py's values
            r5, r4 = _raw(t5, s5, seed), _raw(t4, s4, seed)
            y5, y4 = _deq(r5, t5, s5), _deq(r4, t4, s4)
            ops5, ops4 = ({p.op for p in ox.explain(y).nodes} for y in (y5, y4))
            assert "ggml_dequantize" in ops5, ox.explain(y5)
            assert "ggml_dequantize" not in ops4, ox.explain(y4)
            assert "(ggml_dequantize decomposed: cpu_numpy.ggml_dequantize.decomposed=10.0us* < " \
                   f"{KERNEL}=100.0us)" in str(ox.explain(y4))
            np.testing.assert_array_equal(y5.numpy(), dequantize_reference(r5, t5, s5))
            np.testing.assert_array_equal(y4.numpy(), dequantize_reference(r4, t4, s4))


def test_quick_autotune_measures_each_type_and_a_file_weight_uses_its_own(gguf_only, tmp_path):
    """End to end: ``oxcore.autotune`` quick mode on the declared cases, then a real Q8_0 weight
    read from a GGUF file is planned on Q8_0's measurements, and a Q4_0 weight (not measured)
    borrows none of them."""
    from oxcore_io_gguf import _tune, save

    res = autotune.tune(ops=["ggml_dequantize"], quick=True, transfers=False)
    assert res.failed == 0, [r for r in res.rows if r["status"] != "ok"]
    saved = _profile.current().data["kernels"].values()
    want = {(kid, f"ggml_type={t}") for t, _ in _tune.QUICK
            for kid in (KERNEL, "cpu_numpy.ggml_dequantize.decomposed")}
    assert {(e["kernel"], e["attrs"]) for e in saved} == want

    rng = np.random.default_rng()
    w = rng.standard_normal((256, 640)).astype(np.float32)
    path = os.path.join(tmp_path, "w.gguf")
    save(path, {"q8": w}, quantize="Q8_0")
    save(os.path.join(tmp_path, "w4.gguf"), {"q4": w}, quantize="Q4_0")
    f8, f4 = ox.load(path), ox.load(os.path.join(tmp_path, "w4.gguf"))
    prof = _profile.current()
    (p8,) = [p for p in ox.explain(f8["q8"]).nodes if p.op == "ggml_dequantize"]
    mine = dict(p8.candidates)[KERNEL]
    q8 = [e["us"] for e in saved if e["kernel"] == KERNEL and e["attrs"] == "ggml_type=Q8_0"]
    assert getattr(mine, "measured", False) and float(mine) == pytest.approx(q8[0]), p8.candidates
    (p4,) = [p for p in ox.explain(f4["q4"]).nodes if p.op == "ggml_dequantize"]
    assert prof.lookup(_kernel(), p4) is None  # NOTE: Q4_0 was never measured: no other type's numbers
    assert not getattr(dict(p4.candidates)[KERNEL], "measured", False)
    np.testing.assert_array_equal(f8["q8"].numpy(), dequantize_reference(f8.raw("q8"), "Q8_0", (256, 640)))
