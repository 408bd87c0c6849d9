"""Optimizers as functions of ``(params, grads, state)``, with MLX's ``opt.update(model, grads)``."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .. import _dtypes as D
from .._array import Array
from .._errors import AttributeValueError, DTypeError
from ..ops import elementwise as E
from ..ops.creation import asarray, zeros_like
from ..ops.reduction import sum as asum
from ..tree import tree_flatten, tree_items, tree_map, tree_unflatten

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Lion", "clip_grad_norm"]

_FIXED = ("step", "learning_rate")


class Optimizer:
    """Base class. ``init(params) -> state`` and ``apply(params, grads, state) -> (params,
    state)`` are pure (usable inside ``oxcore.compile``); ``update(model, grads)`` keeps the
    state on the optimizer, as MLX does.

    The state is a pytree ``{"step", "learning_rate", <slot>: {param.path: Array}}``;
    ``save(path)`` / ``load(path)`` write and read it with ``oxcore.save``, so a resumed run
    continues bit for bit.

    Subclasses name their per-parameter ``slots`` and implement ``apply_single``.
    """

    slots: tuple[str, ...] = ()

    def __init__(self, learning_rate: float | Callable[[Any], Array]) -> None:
        self._schedule = learning_rate if callable(learning_rate) else None
        self._lr = None if callable(learning_rate) else float(learning_rate)
        self.state: dict | None = None

    # --- the pure interface -------------------------------------------------------------------
    def init(self, params: Any) -> dict:
        """A fresh state for ``params`` (any pytree of float arrays, a model included)."""
        items = _check_params(tree_items(params), "init")
        step = asarray(0, dtype=D.int64)
        state: dict = {"step": step, "learning_rate": self._lr_at(step, None)}
        for s in self.slots:
            state[s] = {p: zeros_like(x) for p, x in items}
        return state

    def _lr_at(self, step: Array, state: dict | None) -> Array:
        if self._schedule is not None:
            return asarray(self._schedule(step), dtype=D.float32)
        if state is not None and "learning_rate" in state:
            return state["learning_rate"]
        return asarray(self._lr, dtype=D.float32)

    def apply(self, params: Any, grads: Any, state: dict) -> tuple[Any, dict]:
        """One update: the new parameters (shaped like ``grads``, which may cover a part of
        ``params``) and the new state."""
        g_leaves, g_def = tree_flatten(grads)
        g_items = _check_params(tree_items(grads), "apply", what="gradient")
        p = dict(tree_items(params))
        lr = self._lr_at(state["step"], state)
        step = state["step"] + 1
        new_state = {"step": step, "learning_rate": lr}
        new_state.update({s: dict(state.get(s, {})) for s in self.slots})
        out = []
        for path, g in g_items:
            if path not in p:
                raise KeyError(f"{type(self).__name__}: a gradient for {path!r}, which is not among the parameters")
            w = p[path]
            if not isinstance(w, Array) or not w.dtype.is_floating:
                raise DTypeError(f"{type(self).__name__}: parameter {path!r} is "
                                 f"{getattr(w, 'dtype', type(w).__name__)}, not a floating-point Array")
            slots = {s: new_state[s].get(path) for s in self.slots}
            slots = {s: zeros_like(w) if v is None else v for s, v in slots.items()}
            w_new = self.apply_single(g, w, slots, lr.astype(g.dtype), step)
            for s in self.slots:
                new_state[s][path] = slots[s]
            out.append(w_new)
        return tree_unflatten(g_def, out), new_state

    def apply_single(self, g: Array, w: Array, slots: dict[str, Array], lr: Array, step: Array) -> Array:
        """The new value of one parameter; update ``slots`` in place (the dict, not arrays)."""
        raise NotImplementedError

    # --- MLX's stateful convenience -----------------------------------------------------------
    def update(self, model: Any, grads: Any) -> None:
        """Apply ``grads`` (from ``nn.value_and_grad``) to ``model``'s trainable parameters.

        Raises if a gradient names a frozen parameter or one the model does not have.
        """
        trainable = model.trainable_parameters()
        names = {k for k, _ in tree_items(trainable)}
        for k, _ in tree_items(grads):
            if k not in names:
                frozen = k in {n for n, _ in model.named_parameters()}
                raise ValueError(f"{type(self).__name__}.update: {'parameter ' + repr(k) + ' is frozen' if frozen else repr(k) + ' is not a parameter of the model'}; "
                                 f"trainable parameters: {', '.join(sorted(names)) or 'none'}")
        if self.state is None:
            self.state = self.init(trainable)
        new, self.state = self.apply(trainable, grads, self.state)
        model.update(new)

    @property
    def learning_rate(self) -> Array:
        """The learning rate of the last update (or the first one to come)."""
        if self.state is not None:
            return self.state["learning_rate"]
        return self._lr_at(asarray(0, dtype=D.int64), None)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._schedule, self._lr = None, float(value)
        if self.state is not None:
            self.state["learning_rate"] = asarray(value, dtype=D.float32)

    @property
    def step(self) -> int:
        """Updates done so far."""
        return 0 if self.state is None else int(self.state["step"].item())

    def save(self, path: Any, metadata: Mapping[str, str] | None = None) -> None:
        """Write the state with ``oxcore.save`` (format from the suffix)."""
        from .._io import save

        if self.state is None:
            raise ValueError(f"{type(self).__name__}.save: no state yet (call init or update first)")
        save(path, dict(state_items(self.state)), metadata)

    def load(self, path: Any) -> "Optimizer":
        """Read a state written by ``save``; the next update continues from it."""
        from .._io import load

        self.state = state_from_items(load(path).items(), self.slots)
        return self


def state_items(state: dict) -> list[tuple[str, Array]]:
    """The state as ``[(name, Array)]``: ``step``, ``learning_rate``, ``<slot>.<param.path>``."""
    out = [(k, state[k]) for k in _FIXED]
    for s in sorted(k for k in state if k not in _FIXED):
        out += [(f"{s}.{p}", a) for p, a in sorted(state[s].items())]
    return out


def state_from_items(items: Any, slots: Sequence[str]) -> dict:
    """Inverse of ``state_items``."""
    state: dict = {s: {} for s in slots}
    for name, a in items:
        if name in _FIXED:
            state[name] = a
            continue
        slot, _, path = name.partition(".")
        if slot not in state:
            raise ValueError(f"optimizer state: {name!r} belongs to slot {slot!r}; this optimizer has "
                             f"{', '.join(slots) or 'no slots'}")
        state[slot][path] = a
    missing = [k for k in _FIXED if k not in state]
    if missing:
        raise ValueError(f"optimizer state: missing {', '.join(missing)}")
    return state


def _check_params(items: list, who: str, what: str = "parameter") -> list:
    for path, x in items:
        if not isinstance(x, Array):
            raise TypeError(f"optimizer {who}: {what} {path!r} is a {type(x).__name__}, not an Array")
        if not x.dtype.is_floating:
            raise DTypeError(f"optimizer {who}: {what} {path!r} is {x.dtype.name}; only floating-point arrays "
                             f"are trained (freeze it, or leave it out)")
    return items


def _betas(name: str, betas: Sequence[float]) -> tuple[float, float]:
    b1, b2 = betas
    for i, b in enumerate((b1, b2)):
        if not 0.0 <= b < 1.0:
            raise AttributeValueError(f"{name} beta{i + 1} must be in [0, 1), got {b}")
    return float(b1), float(b2)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum, dampening and weight
    decay (an L2 term added to the gradient), as ``mlx.optimizers.SGD``.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import optim
        >>> opt = optim.SGD(0.1, momentum=0.9)
        >>> params = {"w": ox.asarray([1.0, 2.0])}
        >>> state = opt.init(params)
        >>> params, state = opt.apply(params, {"w": ox.asarray([1.0, 1.0])}, state)
        >>> [round(v, 4) for v in params["w"].tolist()], state["step"].item()
        ([0.9, 1.9], 1)
    """

    def __init__(self, learning_rate: float | Callable, momentum: float = 0.0, weight_decay: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False) -> None:
        if nesterov and (momentum <= 0 or dampening != 0):
            raise AttributeValueError("SGD: Nesterov momentum needs momentum > 0 and dampening == 0")
        super().__init__(learning_rate)
        self.momentum, self.weight_decay, self.dampening, self.nesterov = momentum, weight_decay, dampening, nesterov
        self.slots = ("v",) if momentum > 0 else ()

    def apply_single(self, g, w, slots, lr, step):
        if self.weight_decay != 0:
            g = g + self.weight_decay * w
        if self.momentum <= 0:
            return w - lr * g
        v = self.momentum * slots["v"]
        v = v + ((1 - self.dampening) * g if self.dampening > 0 else g)
        slots["v"] = v
        return w - lr * (g + self.momentum * v if self.nesterov else v)


class RMSprop(Optimizer):
    """RMSprop: ``v = alpha v + (1 - alpha) g^2``, ``w -= lr g / (sqrt(v) + eps)``."""

    slots = ("v",)

    def __init__(self, learning_rate: float | Callable, alpha: float = 0.99, eps: float = 1e-8) -> None:
        if alpha < 0 or eps <= 0:
            raise AttributeValueError(f"RMSprop needs alpha >= 0 and eps > 0, got alpha={alpha}, eps={eps}")
        super().__init__(learning_rate)
        self.alpha, self.eps = alpha, eps

    def apply_single(self, g, w, slots, lr, step):
        v = self.alpha * slots["v"] + (1 - self.alpha) * E.square(g)
        slots["v"] = v
        return w - lr * g / (E.sqrt(v) + self.eps)


class Adagrad(Optimizer):
    """Adagrad: ``v += g^2``, ``w -= lr g / (sqrt(v) + eps)``."""

    slots = ("v",)

    def __init__(self, learning_rate: float | Callable, eps: float = 1e-8) -> None:
        if eps <= 0:
            raise AttributeValueError(f"Adagrad needs eps > 0, got {eps}")
        super().__init__(learning_rate)
        self.eps = eps

    def apply_single(self, g, w, slots, lr, step):
        v = slots["v"] + E.square(g)
        slots["v"] = v
        return w - lr * g / (E.sqrt(v) + self.eps)


class Adam(Optimizer):
    """Adam, as ``mlx.optimizers.Adam``: no bias correction unless ``bias_correction=True``
    (PyTorch's Adam is ``bias_correction=True``).

    Example:
        >>> import oxcore as ox
        >>> from oxcore import optim
        >>> opt = optim.Adam(1e-3, bias_correction=True)
        >>> p, s = opt.apply({"w": ox.ones(2)}, {"w": ox.asarray([0.5, -2.0])}, opt.init({"w": ox.ones(2)}))
        >>> [round(v, 6) for v in p["w"].tolist()]
        [0.999, 1.001]
    """

    slots = ("m", "v")

    def __init__(self, learning_rate: float | Callable, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 bias_correction: bool = False) -> None:
        super().__init__(learning_rate)
        self.betas = _betas(type(self).__name__, betas)
        if eps < 0:
            raise AttributeValueError(f"{type(self).__name__} needs eps >= 0, got {eps}")
        self.eps, self.bias_correction = eps, bias_correction

    def apply_single(self, g, w, slots, lr, step):
        b1, b2 = self.betas
        m = b1 * slots["m"] + (1 - b1) * g
        v = b2 * slots["v"] + (1 - b2) * E.square(g)
        slots["m"], slots["v"] = m, v
        if self.bias_correction:
            t = step.astype(D.float32)
            c1 = (lr / (1 - E.pow(asarray(b1, dtype=D.float32), t))).astype(g.dtype)
            c2 = E.rsqrt(1 - E.pow(asarray(b2, dtype=D.float32), t)).astype(g.dtype)
            return w - c1 * m / (E.sqrt(v) * c2 + self.eps)
        return w - lr * m / (E.sqrt(v) + self.eps)


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, ``w <- w (1 - lr wd)`` before the Adam step."""

    def __init__(self, learning_rate: float | Callable, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, bias_correction: bool = False) -> None:
        super().__init__(learning_rate, betas, eps, bias_correction)
        self.weight_decay = weight_decay

    def apply_single(self, g, w, slots, lr, step):
        return super().apply_single(g, w * (1 - lr * self.weight_decay), slots, lr, step)


class Lion(Optimizer):
    """Lion: ``w -= lr (sign(b1 m + (1 - b1) g) + wd w)``, ``m = b2 m + (1 - b2) g``."""

    slots = ("m",)

    def __init__(self, learning_rate: float | Callable, betas: Sequence[float] = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        super().__init__(learning_rate)
        self.betas = _betas("Lion", betas)
        self.weight_decay = weight_decay

    def apply_single(self, g, w, slots, lr, step):
        b1, b2 = self.betas
        m = slots["m"]
        c = b1 * m + (1 - b1) * g
        slots["m"] = b2 * m + (1 - b2) * g
        if self.weight_decay > 0:
            w = (1 - lr * self.weight_decay) * w
        return w - lr * E.sign(c)


def clip_grad_norm(grads: Any, max_norm: float) -> tuple[Any, Array]:
    """Scale ``grads`` so their global L2 norm is at most ``max_norm``; returns
    ``(clipped_grads, total_norm)`` (the norm before clipping), as MLX does.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import optim
        >>> g, n = optim.clip_grad_norm({"a": ox.asarray([3.0]), "b": ox.asarray([4.0])}, 1.0)
        >>> round(n.item(), 4), [round(g[k].item(), 4) for k in "ab"]
        (5.0, [0.6, 0.8])
    """
    if max_norm < 0:
        raise AttributeValueError(f"max_norm must be >= 0, got {max_norm}")
    leaves = tree_flatten(grads)[0]
    sq = [asum(E.square(g.astype(D.float32) if g.dtype is D.float16 else g)) for g in leaves]
    total = sq[0] if sq else asarray(0.0, dtype=D.float32)
    for s in sq[1:]:
        total = total + s
    norm = E.sqrt(total)
    scale = E.minimum(max_norm / (norm + 1e-6), asarray(1.0, dtype=norm.dtype))
    return tree_map(lambda g: (g * scale).astype(g.dtype), grads), norm
