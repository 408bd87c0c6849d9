"""The shared MLX device: naming and truthful kind, buffer conversion, lazy import."""

from __future__ import annotations

import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

import oxcore as ox
from oxcore.extend import manager
from oxcore_metal_basic import MLXBackend, mlx_device

ALL = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "bfloat16",
       "float32", "float64"]


def test_device_is_truthful():
    d = mlx_device()
    gpu = mx.is_available(mx.gpu)
    assert d.name == ("mlx:gpu" if gpu else "mlx:cpu") and d.kind == ("gpu" if gpu else "cpu")
    want = "cuda" if gpu and mx.cuda.is_available() else "metal" if gpu else "cpu"
    assert d.platform == want
    assert d.description.startswith({"cuda": "CUDA: ", "metal": "Metal: ", "cpu": "CPU: "}[want])
    assert mx.device_info(d.mx_device)["device_name"] in d.description


def test_both_backends_share_one_device():
    m = manager()
    devs = {m.backend(n).device for n in ("metal_basic", "metal_fused") if n in m.backends}
    assert len(devs) == 1 and m.device(mlx_device().name) is mlx_device()


@pytest.mark.parametrize("name", ALL)
def test_round_trip_every_dtype(name):
    rng = np.random.default_rng(1)
    dt = ox.dtype(name)
    a = (rng.standard_normal((3, 5)) * 100).astype(dt.numpy) if dt.is_floating else \
        rng.integers(0, 2, (3, 5)).astype(dt.numpy) if name == "bool" else \
        rng.integers(np.iinfo(dt.numpy).min, np.iinfo(dt.numpy).max, (3, 5), dtype=dt.numpy, endpoint=True)
    buf = mlx_device().from_numpy(a)
    assert buf.dtype == getattr(mx, "bool_" if name == "bool" else name)  # float64 must not become float32
    back = mlx_device().to_numpy(buf)
    assert back.dtype == a.dtype and back.shape == a.shape
    assert back.tobytes() == a.tobytes()  # bit-exact, bfloat16 included


def test_bfloat16_bits_exact_through_mlx_math():
    bits = np.arange(0, 65536, 7, dtype=np.uint16)
    a = bits.view(ml_dtypes.bfloat16)
    finite = np.isfinite(a.astype(np.float32))
    buf = mlx_device().from_numpy(a[finite])
    assert np.array_equal(np.array(buf.astype(mx.float32)), a[finite].astype(np.float32))


def test_to_numpy_is_a_view():
    buf = mx.arange(12, dtype=mx.float32).reshape(3, 4)
    a, b = mlx_device().to_numpy(buf), mlx_device().to_numpy(buf)
    assert not a.flags.owndata and np.shares_memory(a, b)
    h = mlx_device().to_numpy(buf.astype(mx.bfloat16))
    assert h.dtype == ml_dtypes.bfloat16 and not h.flags.owndata


def test_arrays_move_to_and_from_the_device():
    x = ox.asarray(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)).to_device(mlx_device().name)
    assert x.device == mlx_device() and isinstance(x._node.buf, mx.array)
    assert np.array_equal(x.numpy(), np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3))


def test_available_and_unavailable():
    assert manager().backend("metal_basic").available() == (True, "")
    b = MLXBackend(missing="mlx is not importable: ModuleNotFoundError: No module named 'mlx'")
    ok, why = b.available()
    assert not ok and "No module named 'mlx'" in why and b.device.name == "mlx:unavailable"


def test_entry_point_does_not_import_mlx():
    code = ("import sys, oxcore_metal_basic, oxcore_metal_fused; "
            "print(any(m == 'mlx' or m.startswith('mlx.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_scalars_are_cached_by_value():
    d = mlx_device()
    a = np.array(0.25, np.float32)
    first = d.from_numpy(a)
    assert d.from_numpy(np.array(0.25, np.float32)) is first
    a[()] = 0.5  # a host array the user changes: its new value gets its own buffer
    assert d.from_numpy(a).item() == 0.5 and first.item() == 0.25
    assert d.from_numpy(np.array(0.25, np.float16)) is not first
