"""Pytrees: flatten/unflatten round trips, keyed paths, registered classes, errors."""

from collections import namedtuple

import pytest

import oxcore as ox
from oxcore.tree import (register_pytree_node, tree_flatten, tree_from_items, tree_items, tree_leaves, tree_map,
                         tree_structure, tree_unflatten)

Point = namedtuple("Point", "x y")


@pytest.mark.parametrize("tree", [
    1, None, [], {}, (1,), [1, (2, 3), {"a": 4, "b": [5, None]}], {"z": 1, "a": {"c": 2, "b": 3}},
    Point(1, [2, 3]), {1: "x", 0: "y"},
])
def test_round_trip(tree):
    leaves, treedef = tree_flatten(tree)
    assert treedef.num_leaves == len(leaves)
    assert tree_unflatten(treedef, leaves) == tree
    assert tree_structure(tree) == treedef and hash(tree_structure(tree)) == hash(treedef)


def test_dict_keys_sorted_and_paths():
    tree = {"b": [10, 20], "a": {"y": 1, "x": 2}}
    assert tree_leaves(tree) == [2, 1, 10, 20]
    items = tree_items(tree)
    assert items == [("a.x", 2), ("a.y", 1), ("b.0", 10), ("b.1", 20)]
    assert tree_from_items(items) == tree


def test_structures_of_leaves_only_compare_with_any_other_way_of_building_them():
    """A container of leaves only is flattened without a step per leaf (oxcore.compile does it on
    every call); it must still equal the same structure built child by child."""
    flat = tree_structure({"b": 1, "a": 2})
    built = tree_structure({"b": 1, "a": 2}, is_leaf=lambda v: isinstance(v, int))
    assert flat == built and hash(flat) == hash(built) and flat.num_leaves == 2
    assert tree_structure({"a": 2, "b": 1}) == flat  # same keys, other insertion order
    assert tree_structure({"a": 1, "b": (2,)}) != flat and tree_structure({"a": 1, "c": 2}) != flat
    assert tree_leaves({"b": 1, "a": 2}) == [2, 1] and tree_leaves({"a": 2, "b": 1}) == [2, 1]
    assert tree_leaves({2: "x", 1: "y", True: "z"}) == ["x", "z"]  # NOTE: True == 1: one key, insertion order
    assert tree_flatten([1, 2])[1] != tree_flatten((1, 2))[1]


def test_arrays_are_leaves_and_map():
    x, y = ox.asarray([1.0, 2.0]), ox.asarray([3.0])
    out = tree_map(lambda a, b: a + b, {"p": x, "q": [y]}, {"p": x, "q": [y]})
    assert out["p"].tolist() == [2.0, 4.0] and out["q"][0].tolist() == [6.0]


def test_mismatched_structures_and_leaf_counts():
    with pytest.raises(ValueError, match="structure"):
        tree_map(lambda a, b: a, [1, 2], [1, [2]])
    _, treedef = tree_flatten([1, 2])
    with pytest.raises(ValueError, match="too few"):
        tree_unflatten(treedef, [1])
    with pytest.raises(ValueError, match="too many"):
        tree_unflatten(treedef, [1, 2, 3])
    with pytest.raises(ValueError, match="twice"):
        tree_from_items([("a", 1), ("a", 2)])


def test_registered_class_and_is_leaf():
    class Box:
        def __init__(self, items): self.items = items

    register_pytree_node(Box, lambda b: (["items"], [b.items], None), lambda aux, keys, ch: Box(ch[0]))
    leaves, treedef = tree_flatten([Box([1, 2]), 3])
    assert leaves == [1, 2, 3]
    rebuilt = tree_unflatten(treedef, [4, 5, 6])
    assert isinstance(rebuilt[0], Box) and rebuilt[0].items == [4, 5] and rebuilt[1] == 6
    assert tree_items(Box({"w": 1})) == [("items.w", 1)]
    assert tree_leaves([[1, 2], [3]], is_leaf=lambda x: isinstance(x, list) and len(x) == 1) == [1, 2, [3]]
