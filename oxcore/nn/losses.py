"""Loss functions. Each takes ``reduction`` = ``"mean"`` (the default), ``"sum"`` or ``"none"``.

Formulas follow ``mlx.nn.losses`` (and PyTorch where MLX has no counterpart: class weights and
``ignore_index`` in ``cross_entropy``). The default reduction is PyTorch's ``"mean"`` (MLX's is
``"none"``), as for ``oxcore.cross_entropy``.

Example:
    >>> import oxcore as ox
    >>> from oxcore.nn import losses
    >>> logits = ox.asarray([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    >>> round(losses.cross_entropy(logits, ox.asarray([0, 1])).item(), 4)
    0.1672
    >>> losses.mse_loss(ox.asarray([1.0, 2.0]), ox.asarray([1.0, 4.0]), reduction="none").tolist()
    [0.0, 4.0]
"""

from __future__ import annotations

from typing import Any

from .._array import Array
from .._errors import AttributeValueError, DTypeError, ShapeError
from ..ops import elementwise as E
from ..ops import nn as F
from ..ops._rules import as_array, norm_axis
from ..ops.creation import asarray
from ..ops.indexing import take, take_along_axis
from ..ops.manipulation import expand_dims, squeeze
from ..ops.reduction import logsumexp, mean, sum as asum

__all__ = ["cross_entropy", "binary_cross_entropy", "mse_loss", "l1_loss", "huber_loss", "kl_div_loss",
           "cosine_similarity_loss"]

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise AttributeValueError(f"Invalid reduction: {reduction!r}. Valid values are: {', '.join(REDUCTIONS)}")


def _reduce(loss: Array, reduction: str) -> Array:
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return asum(loss)
    return loss


def _same_shape(who: str, a: Array, b: Array) -> None:
    if a.shape != b.shape:
        raise ShapeError(f"{who}: predictions {a.shape} and targets {b.shape} must have the same shape")


def cross_entropy(logits: Any, targets: Any, *, weights: Any = None, axis: int = -1, label_smoothing: float = 0.0,
                  ignore_index: int | None = None, reduction: str = "mean") -> Array:
    """Softmax cross-entropy.

    Args:
        logits: unnormalized scores, classes along ``axis``.
        targets: integer class ids (``logits`` without ``axis``), or class probabilities
            (same shape as ``logits``).
        weights: one weight per class (PyTorch's ``weight``); each sample's loss is scaled by
            its target's weight and ``"mean"`` divides by the sum of those weights.
        axis: the class axis. Default: ``-1``.
        label_smoothing: mix ``label_smoothing`` of a uniform target in. Default: ``0``.
        ignore_index: samples with this target count for nothing (loss 0, out of the mean).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example:
        >>> import oxcore as ox
        >>> from oxcore.nn import losses
        >>> logits = ox.asarray([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
        >>> round(losses.cross_entropy(logits, ox.asarray([0, 1, -100]), ignore_index=-100).item(), 4)
        0.0878
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing < 1.0:
        raise AttributeValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    logits, targets = as_array(logits), as_array(targets)
    if not logits.dtype.is_floating:
        raise DTypeError(f"cross_entropy: logits must be floating point, got {logits.dtype.name}")
    ax = norm_axis(axis, logits.ndim)
    probs = targets.dtype.is_floating
    if probs and targets.shape != logits.shape:
        raise ShapeError(f"cross_entropy: probability targets must have the logits' shape {logits.shape}, "
                         f"got {targets.shape}")
    if not probs:
        expect = logits.shape[:ax] + logits.shape[ax + 1:]
        if targets.shape != expect or not targets.dtype.is_integer:
            raise ShapeError(f"cross_entropy: integer targets must have shape {expect} (logits {logits.shape} "
                             f"without axis {ax}), got {targets.dtype.name}{list(targets.shape)}")
    if not probs and weights is None and label_smoothing == 0.0 and ignore_index is None:
        return F.cross_entropy(logits, targets, axis=ax, reduction=reduction)  # NOTE: the op; fused where it can
    lse = logsumexp(logits, axis=ax)
    if probs:
        score = asum(logits * targets, axis=ax)
        valid = None
    else:
        valid = None if ignore_index is None else targets != ignore_index
        safe = targets if valid is None else E.where(valid, targets, asarray(0, dtype=targets.dtype))
        score = squeeze(take_along_axis(logits, expand_dims(safe, axis=ax), axis=ax), axis=ax)
    if label_smoothing > 0:
        loss = lse - (1 - label_smoothing) * score - label_smoothing * mean(logits, axis=ax)
    else:
        loss = lse - score
    w = None
    if weights is not None:
        weights = as_array(weights).astype(logits.dtype)
        if probs or weights.shape != (logits.shape[ax],):
            raise ShapeError(f"cross_entropy: weights must have one entry per class, shape ({logits.shape[ax]},), "
                             f"with integer targets; got {weights.shape}")
        w = take(weights, safe, axis=0)
    if valid is not None:
        vw = valid.astype(logits.dtype)
        w = vw if w is None else w * vw
    if w is None:
        return _reduce(loss, reduction)
    loss = loss * w
    return asum(loss) / asum(w) if reduction == "mean" else _reduce(loss, reduction)


def binary_cross_entropy(inputs: Any, targets: Any, *, weights: Any = None, with_logits: bool = True,
                         reduction: str = "mean") -> Array:
    """Binary cross-entropy of ``targets`` in [0, 1]; ``inputs`` are logits (stable form
    ``log(1 + e^x) - x * t``) or, with ``with_logits=False``, probabilities (logs clipped at
    -100 as in PyTorch). ``weights`` multiplies each element's loss.

    Example:
        >>> import oxcore as ox
        >>> from oxcore.nn import losses
        >>> round(losses.binary_cross_entropy(ox.asarray([0.0]), ox.asarray([1.0])).item(), 4)
        0.6931
    """
    _check_reduction(reduction)
    inputs, targets = as_array(inputs), as_array(targets)
    _same_shape("binary_cross_entropy", inputs, targets)
    targets = targets.astype(inputs.dtype)
    if with_logits:
        loss = E.logaddexp(asarray(0.0, dtype=inputs.dtype), inputs) - inputs * targets
    else:
        lo = asarray(-100.0, dtype=inputs.dtype)
        loss = -(targets * E.maximum(E.log(inputs), lo) + (1 - targets) * E.maximum(E.log1p(-inputs), lo))
    if weights is not None:
        loss = loss * as_array(weights)
    return _reduce(loss, reduction)


def mse_loss(predictions: Any, targets: Any, *, reduction: str = "mean") -> Array:
    """Mean squared error ``(predictions - targets)^2``."""
    _check_reduction(reduction)
    p, t = as_array(predictions), as_array(targets)
    _same_shape("mse_loss", p, t)
    return _reduce(E.square(p - t), reduction)


def l1_loss(predictions: Any, targets: Any, *, reduction: str = "mean") -> Array:
    """Mean absolute error ``|predictions - targets|``."""
    _check_reduction(reduction)
    p, t = as_array(predictions), as_array(targets)
    _same_shape("l1_loss", p, t)
    return _reduce(E.abs(p - t), reduction)


def huber_loss(inputs: Any, targets: Any, *, delta: float = 1.0, reduction: str = "mean") -> Array:
    """Huber loss: ``0.5 e^2`` for ``|e| <= delta``, ``delta (|e| - 0.5 delta)`` beyond.

    Example:
        >>> import oxcore as ox
        >>> from oxcore.nn import losses
        >>> losses.huber_loss(ox.asarray([0.5, 3.0]), ox.asarray([0.0, 0.0]), reduction="none").tolist()
        [0.125, 2.5]
    """
    _check_reduction(reduction)
    x, t = as_array(inputs), as_array(targets)
    _same_shape("huber_loss", x, t)
    a = E.abs(x - t)
    q = E.minimum(a, asarray(delta, dtype=a.dtype))
    return _reduce(0.5 * q * q + delta * (a - q), reduction)


def kl_div_loss(inputs: Any, targets: Any, *, axis: int = -1, reduction: str = "mean") -> Array:
    """KL divergence ``sum(exp(targets) * (targets - inputs))`` along ``axis``; both are log
    probabilities (as in MLX)."""
    _check_reduction(reduction)
    x, t = as_array(inputs), as_array(targets)
    _same_shape("kl_div_loss", x, t)
    return _reduce(asum(E.exp(t) * (t - x), axis=norm_axis(axis, x.ndim)), reduction)


def cosine_similarity_loss(x1: Any, x2: Any, *, axis: int = 1, eps: float = 1e-8, reduction: str = "mean") -> Array:
    """Cosine similarity ``<x1, x2> / max(|x1| |x2|, eps)`` along ``axis`` (MLX's definition:
    the similarity itself; minimize ``1 - it`` to align vectors).

    Example:
        >>> import oxcore as ox
        >>> from oxcore.nn import losses
        >>> losses.cosine_similarity_loss(ox.asarray([[1.0, 0.0]]), ox.asarray([[2.0, 0.0]])).item()
        1.0
    """
    _check_reduction(reduction)
    a, b = as_array(x1), as_array(x2)
    _same_shape("cosine_similarity_loss", a, b)
    ax = norm_axis(axis, a.ndim)
    na, nb = E.sqrt(asum(a * a, axis=ax)), E.sqrt(asum(b * b, axis=ax))
    return _reduce(asum(a * b, axis=ax) / E.maximum(na * nb, asarray(eps, dtype=na.dtype)), reduction)
