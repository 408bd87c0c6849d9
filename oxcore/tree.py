"""Pytrees: nested lists, tuples and dicts (and registered classes) with arrays at the leaves.

The transforms (``oxcore.grad``, ``vjp``, ``jvp``, ``vmap``), ``oxcore.compile`` and
``oxcore.nn`` take and return pytrees. ``dict``, ``list`` and ``tuple`` (named tuples too) are
containers; ``None`` is an empty container; everything else is a leaf. Other classes become
containers with ``register_pytree_node``.

Example:
    >>> import oxcore as ox
    >>> from oxcore.tree import tree_flatten, tree_unflatten, tree_map, tree_items
    >>> params = {"w": ox.ones((2, 2)), "layers": [ox.zeros(3), ox.zeros(1)]}
    >>> leaves, treedef = tree_flatten(params)
    >>> len(leaves)
    3
    >>> doubled = tree_unflatten(treedef, [x * 2 for x in leaves])
    >>> [k for k, _ in tree_items(doubled)]
    ['layers.0', 'layers.1', 'w']
    >>> tree_map(lambda x: x.shape, params)["layers"]
    [(3,), (1,)]
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple

__all__ = ["TreeDef", "tree_flatten", "tree_unflatten", "tree_leaves", "tree_map", "tree_structure",
           "tree_items", "tree_from_items", "register_pytree_node"]


class _Node(NamedTuple):
    flatten: Callable[[Any], tuple[list, list, Any]]
    unflatten: Callable[[Any, list, list], Any]


# NOTE: exact types only: a registered class's subclasses register themselves (nn.Module does
# this in __init_subclass__), so a dict subclass with its own meaning is never taken apart blindly
_NODES: dict[type, _Node] = {}


def register_pytree_node(cls: type, flatten: Callable[[Any], tuple[list, list, Any]],
                         unflatten: Callable[[Any, list, list], Any]) -> None:
    """Make ``cls`` a container.

    Args:
        cls: the class (exact type; subclasses register on their own).
        flatten: ``flatten(obj) -> (keys, children, aux)``: the children in a fixed order, a key
            for each (used by ``tree_items`` paths) and hashable data needed to rebuild.
        unflatten: ``unflatten(aux, keys, children) -> obj``.

    Example:
        >>> from oxcore.tree import register_pytree_node, tree_leaves
        >>> class Pair:
        ...     def __init__(self, a, b): self.a, self.b = a, b
        >>> register_pytree_node(Pair, lambda p: (["a", "b"], [p.a, p.b], None),
        ...                      lambda aux, keys, ch: Pair(*ch))
        >>> tree_leaves([Pair(1, 2), 3])
        [1, 2, 3]
    """
    _NODES[cls] = _Node(flatten, unflatten)


#: insertion-ordered str keys -> (sorted keys, as a tuple); shared, never mutated
_SORTED_KEYS: dict[tuple, tuple[list, tuple]] = {}


def _dict_flatten(d: dict) -> tuple[list, list, Any]:
    # NOTE: on every call of a compiled function that takes a dict of weights: the sorted order
    # of the same keys is remembered, and no step is taken in Python per key
    order = tuple(d)
    hit = _SORTED_KEYS.get(order)
    if hit is None:
        if not (set(map(type, order)) <= {str} or all(isinstance(k, str) for k in order)):
            return list(order), list(map(d.__getitem__, order)), order
        keys = sorted(order)
        hit = (keys, tuple(keys))
        if len(_SORTED_KEYS) >= 4096:
            _SORTED_KEYS.clear()
        _SORTED_KEYS[order] = hit
    return hit[0], list(map(d.__getitem__, hit[0])), hit[1]


register_pytree_node(dict, _dict_flatten, lambda aux, keys, ch: dict(zip(keys, ch)))
register_pytree_node(list, lambda x: (list(range(len(x))), list(x), len(x)), lambda aux, keys, ch: list(ch))
register_pytree_node(tuple, lambda x: (list(range(len(x))), list(x), len(x)), lambda aux, keys, ch: tuple(ch))
register_pytree_node(type(None), lambda x: ([], [], None), lambda aux, keys, ch: None)


def _node_of(x: Any) -> _Node | None:
    t = type(x)
    n = _NODES.get(t)
    if n is None and isinstance(x, tuple) and hasattr(x, "_fields"):  # a named tuple
        n = _Node(lambda v: (list(v._fields), list(v), None), lambda aux, keys, ch, t=t: t(*ch))
    return n


class TreeDef:
    """The structure of a pytree without its leaves (hashable, comparable).

    ``num_leaves`` counts the leaves; ``unflatten(leaves)`` rebuilds a tree.
    """

    __slots__ = ("kind", "node", "keys", "aux", "children", "num_leaves", "_flat", "_hash")

    def __init__(self, kind: type | None, node: _Node | None, keys: list, aux: Any,
                 children: tuple["TreeDef", ...]) -> None:
        self.kind, self.node, self.keys, self.aux, self.children = kind, node, keys, aux, children
        # NOTE: children all leaves (a dict of weights): the key holds their count, so hashing
        # it (every call of a compiled function) makes no Python call per leaf
        self._flat = kind is not None and children.count(_LEAF) == len(children)
        self.num_leaves = 1 if kind is None else len(children) if self._flat else sum(
            [c.num_leaves for c in children])
        self._hash: int | None = None

    def _key(self) -> tuple:
        return (self.kind, self.aux, len(self.children) if self._flat else self.children)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TreeDef) and self._key() == other._key()

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self._key())
        return self._hash

    def unflatten(self, leaves: Iterable[Any]) -> Any:
        it = iter(leaves)
        out = self._build(it)
        if next(it, _END) is not _END:
            raise ValueError(f"too many leaves for a tree of {self.num_leaves}")
        return out

    def _build(self, it: Any) -> Any:
        if self.kind is None:
            v = next(it, _END)
            if v is _END:
                raise ValueError(f"too few leaves for a tree of {self.num_leaves}")
            return v
        return self.node.unflatten(self.aux, self.keys, [c._build(it) for c in self.children])

    def __repr__(self) -> str:
        if self.kind is None:
            return "*"
        inner = ", ".join(f"{k}: {c!r}" if self.kind is dict else repr(c) for k, c in zip(self.keys, self.children))
        return f"{self.kind.__name__}({inner})"


_END = object()
_LEAF = TreeDef(None, None, [], None, ())


def _flatten(x: Any, leaves: list, is_leaf: Callable[[Any], bool] | None) -> TreeDef:
    if is_leaf is not None and is_leaf(x):
        leaves.append(x)
        return _LEAF
    node = _node_of(x)
    if node is None:
        leaves.append(x)
        return _LEAF
    keys, children, aux = node.flatten(x)
    # NOTE: a container of leaves only (a dict of weights): no Python step per leaf, only per type
    if is_leaf is None and not any(t in _NODES or issubclass(t, tuple) for t in set(map(type, children))):
        leaves.extend(children)
        return TreeDef(type(x), node, keys, aux, (_LEAF,) * len(children))
    return TreeDef(type(x), node, keys, aux, tuple([_flatten(c, leaves, is_leaf) for c in children]))


def tree_flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list, TreeDef]:
    """``(leaves, treedef)``: the leaves in a fixed order (dict keys sorted) and the structure.

    Example:
        >>> from oxcore.tree import tree_flatten
        >>> leaves, treedef = tree_flatten({"b": 1, "a": (2, 3)})
        >>> leaves, treedef.num_leaves
        ([2, 3, 1], 3)
    """
    leaves: list = []
    return leaves, _flatten(tree, leaves, is_leaf)


def tree_unflatten(treedef: TreeDef, leaves: Iterable[Any]) -> Any:
    """Rebuild a tree of ``treedef``'s structure from ``leaves`` (the inverse of ``tree_flatten``)."""
    return treedef.unflatten(leaves)


def tree_leaves(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> list:
    """The leaves of ``tree`` in ``tree_flatten`` order."""
    return tree_flatten(tree, is_leaf)[0]


def tree_structure(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> TreeDef:
    """The ``TreeDef`` of ``tree``."""
    return tree_flatten(tree, is_leaf)[1]


def tree_map(fn: Callable[..., Any], tree: Any, *rest: Any, is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """Apply ``fn`` to every leaf (and the matching leaves of ``rest``, which must have the
    same structure); return a tree of the results.

    Example:
        >>> from oxcore.tree import tree_map
        >>> tree_map(lambda a, b: a + b, {"x": 1, "y": [2]}, {"x": 10, "y": [20]})
        {'x': 11, 'y': [22]}
    """
    leaves, treedef = tree_flatten(tree, is_leaf)
    others = []
    for r in rest:
        rl, rd = tree_flatten(r, is_leaf)
        if rd != treedef:
            raise ValueError(f"tree_map: trees differ in structure: {treedef!r} vs {rd!r}")
        others.append(rl)
    return treedef.unflatten(fn(*xs) for xs in zip(leaves, *others))


def tree_items(tree: Any, prefix: str = "", is_leaf: Callable[[Any], bool] | None = None) -> list[tuple[str, Any]]:
    """``[(dotted.path, leaf)]`` in ``tree_flatten`` order (MLX's ``tree_flatten`` form; the
    names ``save_weights`` writes).

    Example:
        >>> from oxcore.tree import tree_items
        >>> tree_items({"layers": [{"w": 1}, {"w": 2}], "bias": 3})
        [('bias', 3), ('layers.0.w', 1), ('layers.1.w', 2)]
    """
    out: list[tuple[str, Any]] = []

    def walk(x: Any, path: str) -> None:
        node = None if (is_leaf is not None and is_leaf(x)) else _node_of(x)
        if node is None:
            out.append((path, x))
            return
        keys, children, _ = node.flatten(x)
        for k, c in zip(keys, children):
            walk(c, f"{path}.{k}" if path else str(k))
    walk(tree, prefix)
    return out


def tree_from_items(items: Iterable[tuple[str, Any]]) -> Any:
    """Nested dicts (and lists, where every key of a level is an integer) from dotted paths:
    the inverse of ``tree_items`` for dict/list trees.

    Example:
        >>> from oxcore.tree import tree_from_items
        >>> tree_from_items([("layers.0.w", 1), ("layers.1.w", 2), ("bias", 3)])
        {'layers': [{'w': 1}, {'w': 2}], 'bias': 3}
    """
    root: dict = {}
    for path, value in items:
        parts = path.split(".")
        d = root
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise ValueError(f"tree_from_items: {path!r} goes through a leaf")
        if parts[-1] in d:
            raise ValueError(f"tree_from_items: {path!r} given twice")
        d[parts[-1]] = value

    def listify(x: Any) -> Any:
        if not isinstance(x, dict):
            return x
        x = {k: listify(v) for k, v in x.items()}
        if x and all(k.isdigit() for k in x):
            idx = sorted(int(k) for k in x)
            if idx == list(range(len(idx))):
                return [x[str(i)] for i in idx]
        return x
    return listify(root)
