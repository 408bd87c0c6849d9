"""Basic layers: Linear, Embedding, norms, Dropout, Sequential and activations as modules."""

from __future__ import annotations

import math
from typing import Any, Callable

from .. import _dtypes as D
from .._array import Array
from .._errors import AttributeValueError
from ..ops import elementwise as E
from ..ops import nn as F
from ..ops import random as R
from ..ops.creation import ones, zeros
from . import init
from ._module import Module

__all__ = ["Linear", "Embedding", "LayerNorm", "RMSNorm", "Dropout", "Sequential", "Identity", "ReLU", "GELU",
           "SiLU", "Sigmoid", "Tanh", "Softmax"]


class Linear(Module):
    """``y = x @ weight.T + bias``; weight ``(output_dims, input_dims)``.

    Initialized like MLX: uniform in ``+-1/sqrt(input_dims)``.

    Args:
        input_dims: features of the input (its last axis).
        output_dims: features of the output.
        bias: add a learned bias. Default: ``True``.
        dtype: parameter dtype. Default: float32.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> nn.Linear(4, 2)(ox.ones((3, 4))).shape
        (3, 2)
        >>> nn.Linear(4, 2)(ox.ones((3, 5)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        oxcore.ShapeError: Linear(input_dims=4, output_dims=2, bias=True): expected input of shape (..., 4), got (3, 5)
    """

    def __init__(self, input_dims: int, output_dims: int, bias: bool = True, dtype: Any = D.float32) -> None:
        super().__init__()
        scale = math.sqrt(1.0 / input_dims)
        self.weight = init.uniform(-scale, scale, dtype)((output_dims, input_dims))
        if bias:
            self.bias = init.uniform(-scale, scale, dtype)((output_dims,))

    def _extra_repr(self) -> str:
        return f"input_dims={self.weight.shape[1]}, output_dims={self.weight.shape[0]}, bias={'bias' in self}"

    def __call__(self, x: Array) -> Array:
        self._check_input(x, f"(..., {self.weight.shape[1]})",
                          getattr(x, "ndim", 0) >= 1 and x.shape[-1] == self.weight.shape[1])
        return F.linear(x, self.weight, self.get("bias"))


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of ``dims`` features, looked up by integer id.

    Initialized like MLX: normal with std ``1/sqrt(dims)``. ``as_linear(x)`` multiplies by the
    transposed table (tied output projection).

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> emb = nn.Embedding(10, 4)
        >>> emb(ox.asarray([[1, 2, 3]])).shape
        (1, 3, 4)
    """

    def __init__(self, num_embeddings: int, dims: int, dtype: Any = D.float32) -> None:
        super().__init__()
        self.weight = init.normal(0.0, math.sqrt(1.0 / dims), dtype)((num_embeddings, dims))

    def _extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}"

    def __call__(self, ids: Array) -> Array:
        self._check_input(ids, "integer ids of any shape", isinstance(ids, Array) and ids.dtype.is_integer)
        return F.embedding(self.weight, ids)

    def as_linear(self, x: Array) -> Array:
        """``x @ weight.T``: logits over the table's rows."""
        self._check_input(x, f"(..., {self.weight.shape[1]})",
                          getattr(x, "ndim", 0) >= 1 and x.shape[-1] == self.weight.shape[1])
        return F.linear(x, self.weight)


class LayerNorm(Module):
    """Layer norm over the last axis with learned ``weight`` (ones) and ``bias`` (zeros).

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> [round(v, 3) for v in nn.LayerNorm(2)(ox.asarray([1.0, 3.0])).tolist()]
        [-1.0, 1.0]
    """

    def __init__(self, dims: int, eps: float = 1e-5, affine: bool = True, bias: bool = True,
                 dtype: Any = D.float32) -> None:
        super().__init__()
        self.dims, self.eps = dims, eps
        if affine:
            self.weight = ones((dims,), dtype=dtype)
            if bias:
                self.bias = zeros((dims,), dtype=dtype)

    def _extra_repr(self) -> str:
        return f"{self.dims}, eps={self.eps}, affine={'weight' in self}"

    def __call__(self, x: Array) -> Array:
        self._check_input(x, f"(..., {self.dims})", getattr(x, "ndim", 0) >= 1 and x.shape[-1] == self.dims)
        return F.layer_norm(x, self.get("weight"), self.get("bias"), eps=self.eps)


class RMSNorm(Module):
    """RMS norm over the last axis with a learned ``weight`` (ones).

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> [round(v, 3) for v in nn.RMSNorm(2)(ox.asarray([3.0, 4.0])).tolist()]
        [0.849, 1.131]
    """

    def __init__(self, dims: int, eps: float = 1e-5, dtype: Any = D.float32) -> None:
        super().__init__()
        self.dims, self.eps = dims, eps
        self.weight = ones((dims,), dtype=dtype)

    def _extra_repr(self) -> str:
        return f"{self.dims}, eps={self.eps}"

    def __call__(self, x: Array) -> Array:
        self._check_input(x, f"(..., {self.dims})", getattr(x, "ndim", 0) >= 1 and x.shape[-1] == self.dims)
        return F.rms_norm(x, self.weight, eps=self.eps)


class Dropout(Module):
    """Zero each element with probability ``p`` in training mode (scaling the rest by
    ``1/(1-p)``); the identity in eval mode.

    With ``seed`` the masks are reproducible: call ``i`` draws from ``(seed, i)``. Without it
    they come from the global ``oxcore.random`` stream.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> drop = nn.Dropout(0.5, seed=0)
        >>> y = drop(ox.ones((1000,)))
        >>> sorted(set(y.tolist())), 400 < int((y == 0).astype(ox.int32).sum().item()) < 600
        ([0.0, 2.0], True)
        >>> drop.eval()(ox.ones((3,))).tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise AttributeValueError(f"Dropout probability must be in [0, 1), got {p}")
        self.p, self.seed, self._calls = p, seed, 0

    def _extra_repr(self) -> str:
        return f"p={self.p}"

    def __call__(self, x: Array) -> Array:
        if not self.training or self.p == 0.0:
            return x
        s = None
        if self.seed is not None:
            s = (self.seed * 0x9E3779B1 + self._calls * 0x85EBCA77 + 1) & 0xFFFFFFFF
            object.__setattr__(self, "_calls", self._calls + 1)
        keep = R.uniform(x.shape, seed=s) >= self.p
        return E.where(keep, x * (1.0 / (1.0 - self.p)), zeros((), dtype=x.dtype))


class Sequential(Module):
    """Call modules (or plain functions) one after another.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> mlp(ox.ones((1, 4))).shape, len(mlp.layers)
        ((1, 2), 3)
    """

    def __init__(self, *modules: Module | Callable[[Array], Array]) -> None:
        super().__init__()
        self.layers = [m if isinstance(m, Module) else _Fn(m) for m in modules]

    def __call__(self, x: Array) -> Array:
        for m in self.layers:
            x = m(x)
        return x


class _Fn(Module):
    """A plain function inside a Sequential (a module with no parameters)."""

    def __init__(self, fn: Callable[[Array], Array]) -> None:
        super().__init__()
        self.fn = fn

    def _extra_repr(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))

    def __call__(self, x: Array) -> Array:
        return self.fn(x)


def _activation(name: str, fn: Callable[..., Array], doc: str) -> type:
    def __init__(self: Module, **kwargs: Any) -> None:
        Module.__init__(self)
        object.__setattr__(self, "_kwargs", kwargs)

    def __call__(self: Module, x: Array) -> Array:
        return fn(x, **self._kwargs)

    def _extra_repr(self: Module) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())
    return type(name, (Module,), {"__init__": __init__, "__call__": __call__, "_extra_repr": _extra_repr,
                                  "__doc__": doc, "__module__": __name__})


Identity = _activation("Identity", lambda x: x, "Returns its input.")
ReLU = _activation("ReLU", F.relu, "``max(x, 0)`` as a module.")
GELU = _activation("GELU", F.gelu, "GELU as a module; ``GELU(approximate='tanh')`` for the tanh form.")
SiLU = _activation("SiLU", F.silu, "SiLU (swish) as a module.")
Sigmoid = _activation("Sigmoid", F.sigmoid, "Logistic sigmoid as a module.")
Tanh = _activation("Tanh", E.tanh, "tanh as a module.")
Softmax = _activation("Softmax", F.softmax, "Softmax as a module; ``Softmax(axis=-1)``.")
