"""The ML ops under their familiar home (PyTorch-style ``F.``): the same functions as ``oxcore.*``,
the attention masks, and the losses of ``oxcore.nn.losses`` (``F.cross_entropy`` is the plain op;
``losses.cross_entropy`` adds label smoothing, class weights and ``ignore_index``).

Example:
    >>> import oxcore as ox
    >>> import oxcore.nn.functional as F
    >>> F.silu(ox.asarray([0.0])).tolist()
    [0.0]
"""

from ..ops.nn import (cross_entropy, embedding, gelu, layer_norm, linear, log_softmax, relu, rms_norm, rope,
                      scaled_dot_product_attention, sigmoid, silu, softmax, swiglu)
from ..ops.quant import dequantize, quantize, quantized_matmul
from ._attention import causal_mask, padding_mask
from .losses import (binary_cross_entropy, cosine_similarity_loss, huber_loss, kl_div_loss, l1_loss, mse_loss)

__all__ = ["cross_entropy", "embedding", "gelu", "layer_norm", "linear", "log_softmax", "relu", "rms_norm", "rope",
           "scaled_dot_product_attention", "sigmoid", "silu", "softmax", "swiglu", "quantize", "dequantize",
           "quantized_matmul", "causal_mask", "padding_mask", "binary_cross_entropy", "mse_loss", "l1_loss",
           "huber_loss", "kl_div_loss", "cosine_similarity_loss"]
