"""``Module``: a tree of arrays with the methods a model needs (MLX's ``mlx.nn.Module`` shape)."""

from __future__ import annotations

import textwrap
from typing import Any, Callable, Iterable, Mapping

from .._array import Array
from .._errors import ShapeError
from ..tree import register_pytree_node, tree_from_items, tree_items, tree_map

__all__ = ["Module", "value_and_grad"]

_CONTAINERS = (dict, list, tuple)


def _is_param_value(value: Any) -> bool:
    return isinstance(value, (Array,) + _CONTAINERS)


def _param_keys(m: "Module") -> list[str]:
    return sorted(k for k, v in dict.items(m) if not k.startswith("_") and _is_param_value(v))


class _Aux:
    """Pytree aux data of a module: the module (rebuilding needs its non-array attributes) and
    a fingerprint of its structure, so two modules of one type, parameter names and settings
    are the same tree (``oxcore.compile`` replays one trace for both)."""

    __slots__ = ("module", "key", "_hash")

    def __init__(self, module: "Module", keys: tuple[str, ...]) -> None:
        self.module = module
        self.key = (type(module), keys, tuple(_setting(k, v) for k, v in sorted(module.__dict__.items())))
        self._hash = hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Aux) and other.key == self.key

    def __hash__(self) -> int:
        return self._hash


def _setting(k: str, v: Any) -> tuple:
    if isinstance(v, (set, frozenset)):
        return (k, frozenset(v))
    try:
        hash(v)
    except TypeError:
        return (k, "id", id(v))
    return (k, type(v), v) if isinstance(v, (int, float, str, bool, tuple, type(None))) else (k, "id", id(v))


def _flatten(m: "Module") -> tuple[list, list, Any]:
    keys = _param_keys(m)
    return keys, [dict.__getitem__(m, k) for k in keys], _Aux(m, tuple(keys))


def _unflatten(aux: _Aux, keys: list, children: list) -> "Module":
    # NOTE: a shallow copy with new children: grads of a model come back as a model of grads,
    # and the original is never mutated by a transform
    src = aux.module
    new = type(src).__new__(type(src))
    new.__dict__.update(src.__dict__)
    new.__dict__["_no_grad"] = set(src._no_grad)
    dict.update(new, src)
    for k, c in zip(keys, children):
        dict.__setitem__(new, k, c)
    return new


class Module(dict):
    """Base class of layers and models.

    A module's parameters are its array attributes, also inside lists, tuples and dicts and in
    sub-modules (attributes whose name starts with ``_`` are not parameters). A module is a
    pytree (``oxcore.tree``), so ``oxcore.grad(loss)(model, x)`` and ``oxcore.compile`` see
    its parameters. Parameters can be frozen (``freeze``): ``trainable_parameters()``, the
    optimizers and ``nn.value_and_grad`` leave them alone.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> class MLP(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.layers = [nn.Linear(4, 8), nn.Linear(8, 2)]
        ...     def __call__(self, x):
        ...         return self.layers[1](ox.relu(self.layers[0](x)))
        >>> model = MLP()
        >>> [k for k, _ in model.named_parameters()]
        ['layers.0.bias', 'layers.0.weight', 'layers.1.bias', 'layers.1.weight']
        >>> model(ox.ones((3, 4))).shape
        (3, 2)
        >>> model.layers[0].freeze()  # doctest: +ELLIPSIS
        Linear(...)
        >>> [k for k, _ in ox.tree.tree_items(model.trainable_parameters())]
        ['layers.1.bias', 'layers.1.weight']
    """

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "_no_grad", set())
        object.__setattr__(self, "_training", True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_pytree_node(cls, _flatten, _unflatten)

    # --- attributes: arrays and containers live in the dict, everything else on the object ----
    def __getattr__(self, key: str) -> Any:
        try:
            return dict.__getitem__(self, key)
        except KeyError:
            raise AttributeError(f"{type(self).__name__!r} has no attribute {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        if _is_param_value(value):
            if key in self.__dict__:
                del self.__dict__[key]
            self[key] = value
        else:
            object.__setattr__(self, key, value)
            self.pop(key, None)

    def __delattr__(self, key: str) -> None:
        if key in self:
            del self[key]
        else:
            object.__delattr__(self, key)

    # NOTE: a dict's == compares contents (and arrays' == is elementwise): modules compare by
    # identity, like ordinary objects, and hash so they can key caches
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        return True

    @property
    def training(self) -> bool:
        """True in training mode (``train()``), False after ``eval()``."""
        return self._training

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = [(k, v) for k, v in tree_items(self.children(), is_leaf=lambda v: isinstance(v, Module))]
        out = f"{type(self).__name__}({self._extra_repr()}"
        for k, v in children:
            out += "\n" + textwrap.indent(f"({k}): {v!r}", "  ")
        return out + ("\n)" if children else ")")

    # --- traversal --------------------------------------------------------------------------
    def _filter(self, keep_array: Callable[["Module", str, Array], bool]) -> dict:
        def walk(owner: Module, key: str, v: Any) -> Any:
            if isinstance(v, Module):
                return v._filter(keep_array)
            if isinstance(v, dict):
                return {k: walk(owner, key, x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [walk(owner, key, x) for x in v]
            return v if isinstance(v, Array) and keep_array(owner, key, v) else None
        out = {}
        for k in _param_keys(self):
            r = walk(self, k, dict.__getitem__(self, k))
            if r is not None:
                out[k] = r
        return _prune(out)

    def parameters(self) -> dict:
        """Every array of this module and its sub-modules, as nested dicts and lists.

        Example:
            >>> from oxcore import nn
            >>> sorted(nn.Linear(2, 3).parameters())
            ['bias', 'weight']
        """
        return self._filter(lambda m, k, v: True)

    def trainable_parameters(self) -> dict:
        """``parameters()`` without the frozen ones."""
        return self._filter(lambda m, k, v: k not in m._no_grad)

    def named_parameters(self) -> list[tuple[str, Array]]:
        """``[(dotted.name, array)]`` for every parameter: the names ``save_weights`` writes."""
        return tree_items(self.parameters())

    def children(self) -> dict:
        """The direct sub-modules (also inside lists and dicts)."""
        def walk(v: Any) -> Any:
            if isinstance(v, Module):
                return v
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [walk(x) for x in v]
            return None
        return _prune({k: walk(dict.__getitem__(self, k)) for k in _param_keys(self)})

    def named_modules(self) -> list[tuple[str, "Module"]]:
        """``[(dotted.name, module)]`` for this module (named ``""``) and every sub-module."""
        out = [("", self)]
        for k, m in tree_items(self.children(), is_leaf=lambda v: isinstance(v, Module)):
            out += [(f"{k}.{n}" if n else k, s) for n, s in m.named_modules()]
        return out

    def modules(self) -> list["Module"]:
        """This module and every sub-module."""
        return [m for _, m in self.named_modules()]

    # --- changing parameters ----------------------------------------------------------------
    def update(self, parameters: Mapping, strict: bool = True) -> "Module":
        """Replace parameters with those in ``parameters`` (a full or partial tree shaped like
        ``parameters()``); returns the module.

        Example:
            >>> import oxcore as ox
            >>> from oxcore import nn
            >>> lin = nn.Linear(2, 2)
            >>> lin.update({"bias": ox.ones(2)}).bias.tolist()
            [1.0, 1.0]
        """
        def apply(dst: Any, src: Any, path: str) -> None:
            items = src.items() if isinstance(src, Mapping) else enumerate(src)
            for k, new in items:
                where = f"{path}.{k}" if path else str(k)
                if isinstance(dst, (list, tuple)) and isinstance(k, str) and k.isdigit():
                    k = int(k)  # NOTE: tree_from_items keeps {"0": .., "2": ..} (a list with holes) as a dict
                try:
                    cur = dst[k]
                except (KeyError, IndexError, TypeError):
                    if strict:
                        raise KeyError(f"update: the module has no parameter {where!r}") from None
                    continue
                if isinstance(cur, Array) or cur is None:
                    if strict and not isinstance(new, Array):
                        raise TypeError(f"update: {where!r} must be an Array, got {type(new).__name__}")
                    if isinstance(dst, tuple):
                        raise TypeError(f"update: {where!r} sits in a tuple; use a list for parameters")
                    dict.__setitem__(dst, k, new) if isinstance(dst, Module) else dst.__setitem__(k, new)
                elif isinstance(cur, (Mapping, list, tuple)) and isinstance(new, (Mapping, list, tuple)):
                    apply(cur, new, where)
                elif strict:
                    raise TypeError(f"update: {where!r} is a {type(cur).__name__}, got {type(new).__name__}")
        apply(self, parameters, "")
        return self

    def apply(self, fn: Callable[[Array], Array]) -> "Module":
        """Replace every parameter ``p`` by ``fn(p)`` (e.g. a dtype cast); returns the module.

        Example:
            >>> import oxcore as ox
            >>> from oxcore import nn
            >>> nn.Linear(2, 2).apply(lambda p: p.astype(ox.float16)).weight.dtype
            oxcore.float16
        """
        return self.update(tree_map(fn, self.parameters()))

    def freeze(self, *, recurse: bool = True, keys: str | Iterable[str] | None = None) -> "Module":
        """Freeze parameters (all, or the named ``keys`` of each module) so they are not trained."""
        for m in (self.modules() if recurse else [self]):
            ks = _param_keys(m) if keys is None else ([keys] if isinstance(keys, str) else list(keys))
            m._no_grad.update(k for k in ks if k in m)
        return self

    def unfreeze(self, *, recurse: bool = True, keys: str | Iterable[str] | None = None) -> "Module":
        """Undo ``freeze`` (all parameters, or the named ``keys``)."""
        for m in (self.modules() if recurse else [self]):
            if keys is None:
                m._no_grad.clear()
            else:
                m._no_grad.difference_update([keys] if isinstance(keys, str) else keys)
        return self

    def train(self, mode: bool = True) -> "Module":
        """Training mode for this module and its sub-modules (Dropout drops)."""
        for m in self.modules():
            object.__setattr__(m, "_training", bool(mode))
        return self

    def eval(self) -> "Module":
        """Evaluation mode: ``train(False)`` (Dropout is the identity)."""
        return self.train(False)

    # --- weights on disk --------------------------------------------------------------------
    def save_weights(self, path: Any, metadata: Mapping[str, str] | None = None) -> None:
        """Write every parameter under its dotted name with ``oxcore.save`` (format from the
        suffix: ``.safetensors`` built in, ``.gguf`` with oxcore-io-gguf)."""
        from .._io import save

        save(path, dict(self.named_parameters()), metadata)

    def load_weights(self, source: Any, strict: bool = True) -> "Module":
        """Set parameters from a file (``oxcore.load``), a mapping or ``[(name, array)]`` pairs.

        With ``strict`` (the default) the names and shapes must match ``named_parameters()``
        exactly; the error names every missing, unexpected and mis-shaped key. Without it,
        the matching names are loaded and the rest ignored.

        Example:
            >>> import oxcore as ox, tempfile, os
            >>> from oxcore import nn
            >>> a, b = nn.Linear(3, 2), nn.Linear(3, 2)
            >>> p = os.path.join(tempfile.mkdtemp(), "w.safetensors")
            >>> a.save_weights(p)
            >>> b.load_weights(p).weight.tolist() == a.weight.tolist()
            True
            >>> nn.Linear(3, 4).load_weights(p)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: load_weights(...w.safetensors): ... mis-shaped: bias (model (4,), file (2,)), weight (model (4, 3), file (2, 3))
        """
        from .._io import load

        where = str(source) if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__") else "weights"
        if where != "weights":
            source = load(source)
        pairs = dict(source.items() if isinstance(source, Mapping) else source)
        current = dict(self.named_parameters())
        if strict:
            problems = []
            missing = sorted(set(current) - set(pairs))
            unexpected = sorted(set(pairs) - set(current))
            shaped = sorted(k for k in set(current) & set(pairs) if tuple(pairs[k].shape) != current[k].shape)
            if missing:
                problems.append(f"{len(missing)} missing: {', '.join(missing)}")
            if unexpected:
                problems.append(f"{len(unexpected)} unexpected: {', '.join(unexpected)}")
            if shaped:
                problems.append(f"{len(shaped)} mis-shaped: " + ", ".join(
                    f"{k} (model {current[k].shape}, file {tuple(pairs[k].shape)})" for k in shaped))
            if problems:
                raise ValueError(f"load_weights({where}): the weights do not match {type(self).__name__}: "
                                 + "; ".join(problems))
        from ..ops.creation import asarray

        items = [(k, v if isinstance(v, Array) else asarray(v)) for k, v in pairs.items() if k in current]
        return self.update(tree_from_items(items), strict=False)

    # --- checks layers share ----------------------------------------------------------------
    def _check_input(self, x: Any, expect: str, ok: bool) -> None:
        if not ok:
            got = getattr(x, "shape", type(x).__name__)
            raise ShapeError(f"{type(self).__name__}({self._extra_repr()}): expected input of shape {expect}, got {got}")


register_pytree_node(Module, _flatten, _unflatten)


def _empty(v: Any) -> bool:
    return v is None or (type(v) in (dict, list) and not v)


def _prune(tree: Any) -> Any:
    """Drop ``None`` leaves and containers left empty (the filters' holes)."""
    if type(tree) is dict:  # NOTE: exact types: a Module (a dict) is a leaf here
        out = {k: _prune(v) for k, v in tree.items()}
        return {k: v for k, v in out.items() if not _empty(v)}
    if type(tree) is list:
        out = [_prune(v) for v in tree]
        # NOTE: lists keep their positions (names are indices), so holes stay as empty dicts
        return [({} if v is None else v) for v in out] if not all(_empty(v) for v in out) else []
    return tree


def value_and_grad(model: Module, fn: Callable[..., Any]) -> Callable[..., tuple[Any, dict]]:
    """Wrap ``fn(*args)`` (which calls ``model``) so it returns ``(fn(*args), grads)`` with the
    gradients of its result with respect to ``model.trainable_parameters()``.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> model = nn.Linear(3, 1)
        >>> loss_and_grad = nn.value_and_grad(model, lambda x: (model(x) ** 2).mean())
        >>> loss, grads = loss_and_grad(ox.ones((4, 3)))
        >>> sorted(grads), grads["weight"].shape
        (['bias', 'weight'], (1, 3))
    """
    from .._autodiff import value_and_grad as _value_and_grad

    def inner(params: dict, *args: Any, **kwargs: Any) -> Any:
        model.update(params)
        return fn(*args, **kwargs)

    vg = _value_and_grad(inner)

    def wrapped(*args: Any, **kwargs: Any) -> tuple[Any, dict]:
        params = model.trainable_parameters()
        try:
            return vg(params, *args, **kwargs)
        finally:
            model.update(params)  # NOTE: the transform may have put its own leaves in the model
    return wrapped
