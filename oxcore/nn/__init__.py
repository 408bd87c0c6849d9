"""Neural networks: ``Module``, layers, losses, initializers (MLX's ``mlx.nn`` shape).

A model is a ``Module`` whose array attributes are its parameters; it is a pytree, so the
transforms (``oxcore.grad``...), ``oxcore.compile`` and the optimizers (``oxcore.optim``)
take it as it is. ``oxcore.nn.functional`` holds the same ML ops as functions.

Example:
    >>> import oxcore as ox
    >>> from oxcore import nn
    >>> model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 4))
    >>> model(ox.random.normal((2, 8), seed=0)).shape
    (2, 4)
"""

from . import functional, init, losses
from ._attention import KVCache, MultiHeadAttention, QuantizedKVCache, RoPE, causal_mask, padding_mask
from ._layers import (GELU, Dropout, Embedding, Identity, LayerNorm, Linear, ReLU, RMSNorm, Sequential, Sigmoid,
                      SiLU, Softmax, Tanh)
from ._module import Module, value_and_grad
from ._quantized import QuantizedEmbedding, QuantizedLinear, quantize
from ._transformer import TransformerDecoderLayer, TransformerEncoderLayer

__all__ = ["functional", "init", "losses", "Module", "value_and_grad", "Linear", "Embedding", "LayerNorm", "RMSNorm",
           "Dropout", "Sequential", "Identity", "ReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softmax", "RoPE",
           "MultiHeadAttention", "KVCache", "QuantizedKVCache", "causal_mask", "padding_mask",
           "TransformerEncoderLayer", "TransformerDecoderLayer", "QuantizedLinear", "QuantizedEmbedding", "quantize"]
