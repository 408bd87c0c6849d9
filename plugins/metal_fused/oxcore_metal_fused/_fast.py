"""Kernels routed to ``mx.fast``: rms_norm, layer_norm, rope, scaled_dot_product_attention.

Each keeps oxcore's semantics where MLX's differ: rope takes (..., seq, features) from 2-D up
with the offset as a 0-d integer array; attention combines ``causal`` with an explicit mask
and gives NaN rows where a mask hides every key (as the decomposition does). float64 is
refused (mx.fast computes it in float32), and so is anything MLX would silently promote.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx


def rms_norm(x, *w, eps):
    return mx.fast.rms_norm(x, w[0] if w else None, eps)


def layer_norm(x, *wb, eps, has_weight, has_bias):
    w = wb[0] if has_weight else None
    b = wb[-1] if has_bias else None
    return mx.fast.layer_norm(x, w, b, eps)


def rope(x, offset, *, dims, traditional, base, scale):
    flat = x.ndim == 2  # NOTE: mx.fast.rope wants (B, *, T, D)
    y = mx.fast.rope(x[None] if flat else x, dims, traditional=traditional, base=base, scale=scale,
                     offset=offset.astype(mx.int32))
    return y[0] if flat else y


def scaled_dot_product_attention(q, k, v, *mask, scale, causal):
    if not mask:
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask="causal" if causal else None)
    m = mask[0]
    boolean = m.dtype == mx.bool_
    if causal:  # NOTE: mx.fast takes "causal" or an array, not both: fold causal into the array
        Tq, Tk = q.shape[2], k.shape[2]
        keep = mx.arange(Tk - Tq, Tk)[:, None] >= mx.arange(Tk)[None, :]
        m = (m & keep) if boolean else mx.where(keep, m, mx.array(float("-inf"), m.dtype))
    out = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=m)
    # NOTE: MLX returns finite values for a row whose keys are all hidden; softmax over an
    # all -inf row is NaN in oxcore (and in the decomposition), so patch those rows
    visible = mx.any(m if boolean else m > float("-inf"), axis=-1, keepdims=True)
    return mx.where(visible, out, mx.array(float("nan"), out.dtype))


def _no_f64(node: Any) -> "bool | str":
    if node.dtype.name == "float64":
        return "mx.fast computes float64 in float32 (and returns float32)"
    return True


def _same_dtype_params(node: Any) -> "bool | str":
    if _no_f64(node) is not True:
        return _no_f64(node)
    x = node.inputs[0]
    for p in node.inputs[1:]:
        if p.dtype is not x.dtype:
            return f"mx.fast norms promote mixed dtypes ({x.dtype.name} input, {p.dtype.name} parameter)"
    return True


def _sdpa_ok(node: Any) -> "bool | str":
    q, k = node.inputs[0], node.inputs[1]
    if node.attrs["causal"] and q.shape[2] > k.shape[2]:
        return (f"causal attention with more queries ({q.shape[2]}) than keys ({k.shape[2]}) has rows that see "
                f"no key; mx.fast fills them, oxcore gives NaN")
    return True


KERNELS = {"rms_norm": rms_norm, "layer_norm": layer_norm, "rope": rope,
           "scaled_dot_product_attention": scaled_dot_product_attention}
CHECKS = {"rms_norm": _same_dtype_params, "layer_norm": _same_dtype_params, "rope": _no_f64,
          "scaled_dot_product_attention": _sdpa_ok}
