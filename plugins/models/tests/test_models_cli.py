"""``oxcore embed`` / ``oxcore generate``: output formats, and one clear line for each bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from oxcore.cli import main


def _run(*args: str, ok: bool = True, input: bytes | None = None):
    r = CliRunner().invoke(main, list(args), input=input)
    if ok:
        assert r.exit_code == 0, f"oxcore {' '.join(args)} exited {r.exit_code}: {r.output}\n{r.exception!r}"
    return r


def _one_clear_error(r, *needles: str) -> str:
    assert r.exit_code != 0, r.output
    assert "Traceback" not in r.output and not isinstance(r.exception, (AssertionError, TypeError, AttributeError))
    err = r.output.strip()
    assert err.startswith("Error: ") and err.count("\n") == 0, err
    for n in needles:
        assert n in err, f"expected {n!r} in {err!r}"
    return err


def test_embed_json_npy_and_file(minilm, ref_minilm, tmp_path):
    texts, ref = ref_minilm
    rec = json.loads(_run("embed", texts[0], texts[1]).output)
    assert rec["dim"] == 384 and rec["count"] == 2
    np.testing.assert_allclose(np.asarray(rec["embeddings"]), ref[:2], atol=1e-5, rtol=0)
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(texts[:5]) + "\n\n", encoding="utf-8")
    out = tmp_path / "x.npy"
    _run("embed", "--file", str(lines), "--batch-size", "2", "--out", str(out))
    np.testing.assert_allclose(np.load(out), ref[:5], atol=1e-5, rtol=0)


def test_generate_json_record(gemma):
    rec = json.loads(_run("generate", "The capital of France is", "--temp", "0", "--max-tokens", "4",
                          "--backend", "cpu_numpy", "--json").output)
    want = "".join(gemma.generate("The capital of France is", max_tokens=4, temp=0))
    assert rec["text"] == want and rec["generated_tokens"] == 4 and rec["prompt_tokens"] == 6
    assert rec["decode_tok_s"] > 0 and rec["prompt_tok_s"] > 0 and rec["peak_rss_mb"] > 100


def test_generate_streams_and_reports(gemma):
    r = _run("generate", "The capital of France is", "--temp", "0", "--max-tokens", "3", "--backend", "cpu_numpy")
    assert "prompt: 6 tokens" in r.output and "decode: 3 tokens" in r.output and "peak memory" in r.output


def test_empty_prompt():
    _one_clear_error(_run("generate", "  ", ok=False), "the prompt is empty")


def test_prompt_longer_than_the_context(gemma):
    _one_clear_error(_run("generate", "word " * 40, "--ctx", "16", "--backend", "cpu_numpy", ok=False),
                     "tokens but the context holds 16")


def test_unknown_gguf_architecture(tmp_path):
    import oxcore as ox
    from oxcore_io_gguf import save

    p = tmp_path / "odd.gguf"
    save(p, {"w": ox.ones((2, 32))}, {"general.architecture": "nonesuch"})
    _one_clear_error(_run("generate", "hi", "--model", str(p), ok=False), "'nonesuch' model",
                     "known architectures: ", "gemma3")


def test_truncated_gguf(gemma_path, tmp_path):
    p = tmp_path / "cut.gguf"
    with open(gemma_path, "rb") as f:
        p.write_bytes(f.read(8 << 20))
    _one_clear_error(_run("generate", "hi", "--model", str(p), ok=False), str(p))


@pytest.fixture()
def minilm_copy(minilm, tmp_path):
    import oxcore_models._defaults as d

    src = d.minilm_path()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(src / name, tmp_path / name)
    return src, tmp_path


def test_safetensors_missing_a_tensor(minilm_copy):
    import oxcore as ox

    src, dst = minilm_copy
    f = ox.load(src / "model.safetensors")
    keep = {k: f[k] for k in f if k != "encoder.layer.3.output.dense.weight"}
    ox.save(dst / "model.safetensors", keep)
    _one_clear_error(_run("embed", "x", "--model", str(dst), ok=False), "1 tensors missing",
                     "encoder.layer.3.output.dense.weight")


def test_truncated_safetensors(minilm_copy):
    src, dst = minilm_copy
    (dst / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes()[: 1 << 20])
    _one_clear_error(_run("embed", "x", "--model", str(dst / "model.safetensors"), ok=False), "model.safetensors")


def test_non_utf8_input_file(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("caf\u00e9\n".encode("latin-1"))
    _one_clear_error(_run("embed", "--file", str(p), ok=False), "is not UTF-8 text", "0xe9", "offset 3")


def test_missing_model_file_says_what_to_pass(tmp_path):
    _one_clear_error(_run("generate", "hi", "--model", str(tmp_path / "nope.gguf"), ok=False), "not found")
