"""Quantized layers that keep their weights packed (MLX affine groups) and ``nn.quantize``."""

from __future__ import annotations

from typing import Any, Callable

from .._array import Array
from .._errors import AttributeValueError
from ..ops import nn as F
from ..ops import quant as Q
from ._layers import Embedding, Linear
from ._module import Module

__all__ = ["QuantizedLinear", "QuantizedEmbedding", "quantize"]


class QuantizedLinear(Module):
    """A ``Linear`` whose weight is affine-quantized in groups along the input axis (MLX's
    layout: ``weight`` uint32-packed, ``scales`` and ``biases`` per group). The quantized
    parameters are frozen; ``bias`` stays trainable.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> lin = nn.Linear(64, 8)
        >>> q = nn.QuantizedLinear.from_linear(lin, group_size=32, bits=8)
        >>> x = ox.random.normal((2, 64), seed=0)
        >>> bool(ox.max(ox.abs(q(x) - lin(x))) < 0.05), q.weight.dtype
        (True, oxcore.uint32)
    """

    def __init__(self, input_dims: int, output_dims: int, bias: bool = True, group_size: int = 64,
                 bits: int = 4) -> None:
        super().__init__()
        lin = Linear(input_dims, output_dims, bias=bias)
        self._set(lin.weight, lin.get("bias"), group_size, bits)

    def _set(self, weight: Array, bias: Array | None, group_size: int, bits: int) -> None:
        if weight.shape[-1] % group_size:
            raise AttributeValueError(f"QuantizedLinear: group_size {group_size} must divide input_dims "
                                      f"{weight.shape[-1]}")
        self.group_size, self.bits = group_size, bits
        self.weight, self.scales, self.biases = Q.quantize(weight, group_size, bits)
        if bias is not None:
            self.bias = bias
        self.freeze(recurse=False, keys=["weight", "scales", "biases"])

    @classmethod
    def from_linear(cls, linear: Linear, group_size: int = 64, bits: int = 4) -> "QuantizedLinear":
        """Quantize an existing ``Linear``."""
        q = cls.__new__(cls)
        Module.__init__(q)
        q._set(linear.weight, linear.get("bias"), group_size, bits)
        return q

    @classmethod
    def from_quantized(cls, w_q: Array, scales: Array, biases: Array, *, group_size: int, bits: int,
                       bias: Array | None = None) -> "QuantizedLinear":
        """A layer over already-quantized ``(w_q, scales, biases)`` (MLX's affine layout), e.g.
        ggml blocks of a GGUF file re-packed without dequantizing by the GGUF plugin's
        ``to_mlx_affine`` (group size 32)."""
        q = cls.__new__(cls)
        Module.__init__(q)
        q.group_size, q.bits = group_size, bits
        q.weight, q.scales, q.biases = w_q, scales, biases
        if bias is not None:
            q.bias = bias
        q.freeze(recurse=False, keys=["weight", "scales", "biases"])
        return q

    @property
    def input_dims(self) -> int:
        return self.weight.shape[1] * 32 // self.bits

    def _extra_repr(self) -> str:
        return (f"input_dims={self.input_dims}, output_dims={self.weight.shape[0]}, bias={'bias' in self}, "
                f"group_size={self.group_size}, bits={self.bits}")

    def __call__(self, x: Array) -> Array:
        self._check_input(x, f"(..., {self.input_dims})", getattr(x, "ndim", 0) >= 1 and x.shape[-1] == self.input_dims)
        y = Q.quantized_matmul(x, self.weight, self.scales, self.biases, transpose=True, group_size=self.group_size,
                               bits=self.bits)
        return y + self.bias if "bias" in self else y


class QuantizedEmbedding(Module):
    """An ``Embedding`` with its table affine-quantized per group of features; rows are
    dequantized as they are looked up.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> emb = nn.Embedding(10, 64)
        >>> q = nn.QuantizedEmbedding.from_embedding(emb, group_size=32, bits=8)
        >>> ids = ox.asarray([[1, 7]])
        >>> bool(ox.max(ox.abs(q(ids) - emb(ids))) < 0.02)
        True
    """

    def __init__(self, num_embeddings: int, dims: int, group_size: int = 64, bits: int = 4) -> None:
        super().__init__()
        self._set(Embedding(num_embeddings, dims).weight, group_size, bits)

    def _set(self, weight: Array, group_size: int, bits: int) -> None:
        if weight.shape[-1] % group_size:
            raise AttributeValueError(f"QuantizedEmbedding: group_size {group_size} must divide dims {weight.shape[-1]}")
        self.group_size, self.bits = group_size, bits
        self.weight, self.scales, self.biases = Q.quantize(weight, group_size, bits)
        self.freeze(recurse=False)

    @classmethod
    def from_embedding(cls, embedding: Embedding, group_size: int = 64, bits: int = 4) -> "QuantizedEmbedding":
        """Quantize an existing ``Embedding``."""
        q = cls.__new__(cls)
        Module.__init__(q)
        q._set(embedding.weight, group_size, bits)
        return q

    @classmethod
    def from_quantized(cls, w_q: Array, scales: Array, biases: Array, *, group_size: int,
                       bits: int) -> "QuantizedEmbedding":
        """A table over already-quantized ``(w_q, scales, biases)`` (MLX's affine layout)."""
        q = cls.__new__(cls)
        Module.__init__(q)
        q.group_size, q.bits = group_size, bits
        q.weight, q.scales, q.biases = w_q, scales, biases
        q.freeze(recurse=False)
        return q

    @property
    def dims(self) -> int:
        return self.weight.shape[1] * 32 // self.bits

    def _extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, {self.dims}, group_size={self.group_size}, bits={self.bits}"

    def __call__(self, ids: Array) -> Array:
        self._check_input(ids, "integer ids of any shape", isinstance(ids, Array) and ids.dtype.is_integer)
        return Q.dequantize(F.embedding(self.weight, ids), F.embedding(self.scales, ids), F.embedding(self.biases, ids),
                            self.group_size, self.bits)

    def as_linear(self, x: Array) -> Array:
        """``x @ dequantize(weight).T`` (tied output projection)."""
        return Q.quantized_matmul(x, self.weight, self.scales, self.biases, transpose=True,
                                  group_size=self.group_size, bits=self.bits)


def quantize(model: Module, group_size: int = 64, bits: int = 4,
             class_predicate: Callable[[str, Module], bool] | None = None) -> Module:
    """Replace, in place, every ``Linear`` and ``Embedding`` of ``model`` whose feature axis
    ``group_size`` divides (and for which ``class_predicate(name, module)`` holds) by its
    quantized version. Returns ``model``.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> model = nn.Sequential(nn.Embedding(16, 64), nn.Linear(64, 64), nn.Linear(64, 3))
        >>> nn.quantize(model, group_size=32, bits=4)  # doctest: +ELLIPSIS
        Sequential(...)
        >>> [type(m).__name__ for m in model.layers]
        ['QuantizedEmbedding', 'QuantizedLinear', 'QuantizedLinear']
    """
    Q._check(bits, group_size)

    def convert(name: str, m: Any) -> Any:
        if not isinstance(m, (Linear, Embedding)) or m.weight.shape[-1] % group_size:
            return m
        if class_predicate is not None and not class_predicate(name, m):
            return m
        if isinstance(m, Linear):
            return QuantizedLinear.from_linear(m, group_size, bits)
        return QuantizedEmbedding.from_embedding(m, group_size, bits)

    def walk(container: Any, prefix: str) -> None:
        items = list(dict.items(container)) if isinstance(container, dict) else list(enumerate(container))
        for k, v in items:
            if isinstance(k, str) and k.startswith("_"):
                continue
            name = f"{prefix}.{k}" if prefix else str(k)
            new = convert(name, v)
            if new is not v:
                dict.__setitem__(container, k, new) if isinstance(container, dict) else container.__setitem__(k, new)
            elif isinstance(v, (dict, list)):
                walk(v, name)
    walk(model, "")
    return model
