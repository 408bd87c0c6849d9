"""Run by tests/io/test_mapping.py in a subprocess (a SIGBUS there kills only the child).

    python _mapping_child.py DIR SUFFIX MMAP(0|1)

Each scenario writes a fresh file, reads tensors, changes the file and evaluates again; it
prints ``<scenario> <outcome>`` where outcome is ``FormatError``, ``ok`` (values exact) or
``WRONG``. The parent checks the lines and that the child exited normally.
"""

from __future__ import annotations

import os
import sys

import numpy as np

import oxcore as ox

d = suffix = ""
mapped = True
rng = np.random.default_rng()
n_case = 0


def fresh():
    global n_case
    n_case += 1
    p = os.path.join(d, f"m{n_case}{suffix}")
    vals = {"a": rng.standard_normal((64, 96)).astype(np.float32),
            "b": rng.integers(-50, 50, 50000).astype(np.int32)}
    ox.save(p, vals)
    return p, vals, ox.load(p, mmap=mapped)


def outcome(name, fn, want):
    try:
        got = fn()
    except ox.FormatError as e:
        assert "changed since it was opened" in e.reason and e.path.endswith(suffix), e
        print(name, "FormatError", flush=True)
        return
    print(name, "ok" if np.array_equal(got, want) else "WRONG", flush=True)


def truncate(p):
    os.truncate(p, 4096)


def rewrite_same_size(p):
    with open(p, "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(b"\x7f" * 8)
    os.utime(p, ns=(os.stat(p).st_atime_ns, os.stat(p).st_mtime_ns + 10**9))


def replace(p):
    ox.save(p, {"z": np.zeros(3, np.float32)})


def delete(p):
    os.unlink(p)


def main() -> None:
    for change in (truncate, rewrite_same_size, replace, delete):
        # the case: a realized zero-copy view, used again after the change
        p, v, t = fresh()
        b = t["b"]
        assert np.array_equal((b + 1).numpy(), v["b"] + 1)
        change(p)
        outcome(f"{change.__name__}:view", lambda: (b * 2).numpy(), v["b"] * 2)

        # a view derived from a mapped tensor (reshape/slice results are views too)
        p, v, t = fresh()
        c = t["a"].reshape((96, 64))[3:]
        c.numpy()
        change(p)
        outcome(f"{change.__name__}:derived", lambda: (c - 1).numpy(), v["a"].reshape(96, 64)[3:] - 1)

        # not yet realized when the file changed
        p, v, t = fresh()
        change(p)
        outcome(f"{change.__name__}:unrealized", lambda: (t["a"] + 0).numpy(), v["a"])

        # a compiled function holding a mapped weight as a constant
        p, v, t = fresh()
        w = t["a"]
        f = ox.compile(lambda x: x @ w)
        x = rng.standard_normal((2, 64)).astype(np.float32)
        f(ox.asarray(x)).numpy()
        change(p)
        outcome(f"{change.__name__}:compiled", lambda: f(ox.asarray(x)).numpy(),
                (ox.asarray(x) @ ox.asarray(v["a"])).numpy())

        # the MLX backend reads the same buffer through a transfer
        if "metal_basic" in ox.backends():
            p, v, t = fresh()
            with ox.use("metal_basic"):
                y = t["b"] + 0
            change(p)
            with ox.use("metal_basic"):
                outcome(f"{change.__name__}:metal_basic", lambda: (t["b"] * 3 if not mapped else y * 3).numpy(),
                        v["b"] * 3)

    # arrays that do not touch a changed file keep working
    print("unrelated", "ok" if (ox.arange(5) * 2).tolist() == [0, 2, 4, 6, 8] else "WRONG", flush=True)


if __name__ == "__main__":
    d, suffix, mapped = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    main()
