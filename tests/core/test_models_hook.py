"""``oxcore.models``: architectures come from the ``oxcore_register_models`` hook of inline
plugins; files are routed by the architecture they state; failures are clear and isolated."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

import oxcore as ox
import oxcore.models as om
from oxcore.extend import hookimpl, manager


class _Mean:
    def __init__(self, w):
        self.w = w

    def embed(self, texts):
        return np.stack([ox.mean(self.w[: len(t)], axis=0).numpy() for t in texts])


@pytest.fixture()
def plugin():
    mod = types.ModuleType("toy_models")
    mod.OXCORE_PLUGIN_API = 1
    seen = []

    def load(file, meta):
        seen.append(meta)
        if "w" not in file:
            raise ox.FormatError(file.path, None, "needs a 'w' tensor")
        return _Mean(file["w"])

    @hookimpl
    def oxcore_register_models(register):
        register("toy-mean", load, formats=("safetensors",), doc="mean of the first rows")

    mod.oxcore_register_models = oxcore_register_models
    manager().register_plugin(mod, "toy_models")
    try:
        yield seen
    finally:
        manager().unregister_plugin("toy_models")


def _model_dir(tmp_path, arch, tensors):
    ox.save(tmp_path / "model.safetensors", tensors)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": arch, "hidden": 3}))
    return tmp_path


def test_load_routes_by_the_stated_architecture(plugin, tmp_path):
    w = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    d = _model_dir(tmp_path, "toy-mean", {"w": w})
    assert om.architectures()["toy-mean"].distribution == "inline"
    for where in (d, d / "model.safetensors"):
        m = om.load(where)
        np.testing.assert_allclose(m.embed(["ab", "abcd"]), np.stack([w[:2].mean(0), w[:4].mean(0)]), rtol=1e-6)
    assert plugin[-1] == {"model_type": "toy-mean", "hidden": 3}


def test_unknown_architecture_lists_the_known_ones(plugin, tmp_path):
    d = _model_dir(tmp_path, "nonesuch", {"w": np.ones((2, 2), np.float32)})
    with pytest.raises(ox.UnknownNameError, match=r"'nonesuch' model, which no installed plugin can run; "
                                                  r"known architectures: .*toy-mean"):
        om.load(d)


def test_missing_config_and_missing_tensor(plugin, tmp_path):
    ox.save(tmp_path / "model.safetensors", {"v": np.ones((2, 2), np.float32)})
    with pytest.raises(ox.FormatError, match="needs its config.json"):
        om.load(tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "toy-mean"}))
    with pytest.raises(ox.FormatError, match="needs a 'w' tensor"):
        om.load(tmp_path)


def test_a_raising_hook_marks_only_its_plugin_failed(plugin):
    bad = types.ModuleType("bad_models")
    bad.OXCORE_PLUGIN_API = 1

    @hookimpl
    def oxcore_register_models(register):
        raise RuntimeError("boom")

    bad.oxcore_register_models = oxcore_register_models
    manager().register_plugin(bad, "bad_models")
    try:
        assert "toy-mean" in om.architectures()
        info = manager().plugins["bad_models"]
        assert info.status == "failed" and "oxcore_register_models raised RuntimeError: boom" in info.reason
    finally:
        manager().unregister_plugin("bad_models")
