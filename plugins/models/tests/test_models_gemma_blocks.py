"""Gemma 3 multiplying on the file's quantized blocks (``dequantize="blocks"``/``"auto"``):
the same greedy tokens as the float32 copies, the ggml_matmul kernels chosen when a kernel
plugin is installed, and everything still working (through the decomposition) without it."""

from __future__ import annotations

import json

import pytest

from conftest import REF


def _greedy(model, prompt_ids, n):
    from oxcore_models.sampling import Sampler

    return list(model.generate_ids(prompt_ids, max_tokens=n, sampler=Sampler(temp=0), ignore_eos=True))


def _matmul_kernels(model) -> set[str]:
    return {p.kernel.id if p.kernel else "?" for p in model.explain_step(8).nodes if p.op == "ggml_matmul"}


@pytest.fixture(scope="module")
def refs() -> list[dict]:
    return json.loads((REF / "gemma_greedy.json").read_text())


def test_blocks_follow_the_references_with_the_kernels(gemma_path, refs):
    import oxcore as ox
    from oxcore_models.gemma3 import Gemma3, has_block_kernels

    if not has_block_kernels("cpu_numpy"):
        pytest.skip("no ggml_matmul kernel for cpu_numpy (install oxcore-kernels-ggml)")
    f = ox.load(gemma_path)
    m = Gemma3.from_file(f, f.metadata, backend="cpu_numpy")  # NOTE: the default, "auto"
    assert m.weights == "blocks"
    assert m.w.layers[0]["attn_q"].is_lazy  # NOTE: no float32 copy: the blocks stay in the mapping
    assert _matmul_kernels(m) == {"cpu_numpy.ggml_matmul.numba"}
    r = refs[1]
    assert _greedy(m, r["prompt_ids"], 16) == r["transformers_ids"][:16], r["prompt"]


@pytest.fixture
def without_kernel_plugin(monkeypatch):
    """The plugin manager reloaded with oxcore-kernels-ggml blocked (as if uninstalled)."""
    from oxcore.extend import reload_plugins

    monkeypatch.setenv("OXCORE_DISABLE_PLUGINS", "kernels_ggml")
    reload_plugins()
    try:
        yield
    finally:
        monkeypatch.delenv("OXCORE_DISABLE_PLUGINS")
        reload_plugins()


def test_without_the_kernel_plugin_generate_still_works(gemma_path, refs, without_kernel_plugin):
    import oxcore as ox
    from oxcore.extend import manager
    from oxcore_models.gemma3 import Gemma3, has_block_kernels

    assert manager().plugins["kernels_ggml"].status != "loaded"
    assert not has_block_kernels(None)  # NOTE: so the default ("auto") holds float32 copies ("load")
    f = ox.load(gemma_path)
    # NOTE: "blocks" without a kernel: ggml_matmul decomposes into dequantize + matmul
    m = Gemma3.from_file(f, f.metadata, backend="cpu_numpy", dequantize="blocks")
    ops = {p.op for p in m.explain_step(8).nodes}
    assert "ggml_matmul" not in ops and "ggml_dequantize" in ops, sorted(ops)
    r = refs[1]
    assert _greedy(m, r["prompt_ids"], 2) == r["transformers_ids"][:2]


def _explain_cli(*extra: str) -> dict[str, str]:
    """``oxcore generate PROMPT --explain``: {op: its kernels} from the summary's lines."""
    from click.testing import CliRunner

    from oxcore.cli import main

    r = CliRunner().invoke(main, ["generate", "The capital of France is", "--explain", *extra])
    assert r.exit_code == 0, f"{r.output}\n{r.exception!r}"
    lines = r.output.splitlines()
    assert lines[0].endswith("a decode step after 6 prompt tokens") and lines[1].startswith("plan: "), r.output
    return {ln.split()[0]: ln.split(None, 1)[1] for ln in lines[2:] if ln.startswith("  ") and not ln.startswith("  (")}


def test_generate_explain_shows_the_block_kernels(gemma_path):
    from oxcore_models.gemma3 import has_block_kernels

    if not has_block_kernels("cpu_numpy"):
        pytest.skip("no ggml_matmul kernel for cpu_numpy (install oxcore-kernels-ggml)")
    ops = _explain_cli("--model", str(gemma_path), "--backend", "cpu_numpy")
    # NOTE: every product of a decode step: 18 layers x 7 + the LM head
    assert ops["ggml_matmul"].rstrip("*") == "127 x cpu_numpy.ggml_matmul.numba", ops
    assert "matmul" not in ops


def test_generate_explain_without_the_plugin_shows_the_dequantize_path(gemma_path, without_kernel_plugin):
    ops = _explain_cli("--model", str(gemma_path), "--backend", "cpu_numpy", "--dequantize", "blocks")
    assert "ggml_matmul" not in ops and "ggml_dequantize" in ops and ops["matmul"].startswith("127 x "), ops
