"""The ML ops under their familiar home (PyTorch-style ``F.``); same functions as ``oxcore.*``.

Example:
    >>> import oxcore as ox
    >>> import oxcore.nn.functional as F
    >>> F.silu(ox.asarray([0.0])).tolist()
    [0.0]
"""

from ..ops.nn import (cross_entropy, embedding, gelu, layer_norm, linear, log_softmax, relu, rms_norm, rope,
                      scaled_dot_product_attention, sigmoid, silu, softmax, swiglu)
from ..ops.quant import dequantize, quantize, quantized_matmul

__all__ = ["cross_entropy", "embedding", "gelu", "layer_norm", "linear", "log_softmax", "relu", "rms_norm", "rope",
           "scaled_dot_product_attention", "sigmoid", "silu", "softmax", "swiglu", "quantize", "dequantize",
           "quantized_matmul"]
