"""``oxcore train digits``: an MLP on scikit-learn's handwritten digits, AdamW with warmup and
cosine decay, a rich progress bar, checkpoints that resume bit for bit."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable

import click

from . import main

HELD_OUT = 0.2
SPLIT_SEED = 0  # NOTE: the held-out split never depends on --seed, so runs are comparable


@main.group()
def train() -> None:
    """Train the example models."""


def load_digits_split() -> tuple[Any, Any, Any, Any]:
    """``(x_train, y_train, x_test, y_test)`` as NumPy arrays: 8x8 images scaled to [0, 1]."""
    import numpy as np

    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the install
        raise click.ClickException("oxcore train digits needs scikit-learn: pip install 'oxcore[examples]'") from e
    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_test = int(len(x) * HELD_OUT)
    test, tr = order[:n_test], order[n_test:]
    return x[tr], y[tr], x[test], y[test]


def digits_mlp(hidden: int = 256) -> Any:
    """The model: 64 -> hidden -> hidden -> 10 with GELU."""
    from oxcore import nn

    return nn.Sequential(nn.Linear(64, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 10))


def make_step(model: Any, opt: Any, *, compiled: bool = False) -> Callable[[dict, dict, Any, Any], tuple]:
    """A pure training step ``(params, state, x, y) -> (loss, params, state)`` over the model's
    trainable parameters: value_and_grad of the cross-entropy, then ``opt.apply``."""
    import oxcore as ox
    from oxcore.nn import losses

    def loss_of(params: dict, x: Any, y: Any) -> Any:
        model.update(params)
        return losses.cross_entropy(model(x), y)

    loss_and_grad = ox.value_and_grad(loss_of)

    def step(params: dict, state: dict, x: Any, y: Any) -> tuple:
        loss, grads = loss_and_grad(params, x, y)
        params, state = opt.apply(params, grads, state)
        return loss, params, state
    return ox.compile(step) if compiled else step


def _optimizer(lr: float, warmup: int, total: int) -> Any:
    from oxcore import optim

    sched = optim.join_schedules([optim.linear_schedule(0.0, lr, warmup),
                                  optim.cosine_decay(lr, max(total - warmup, 1))], [warmup])
    return optim.AdamW(sched, weight_decay=1e-4, bias_correction=True)


def _accuracy(model: Any, x: Any, y: Any) -> float:
    import numpy as np

    import oxcore as ox

    pred = ox.argmax(model(ox.asarray(x)), axis=-1).numpy()
    return float(np.mean(pred == y))


def _optim_path(path: Path) -> Path:
    return path.with_name(path.stem + ".optim.safetensors")


def train_digits(*, epochs: int = 20, seed: int = 0, backend: str | None = None, batch_size: int = 64,
                 lr: float = 3e-3, hidden: int = 256, save: str | None = None, resume: str | None = None,
                 compiled: bool = False, progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Train (or continue training) the digits MLP for ``epochs`` in all; returns a summary
    dict (accuracy, loss, epochs, steps, seconds, model, optimizer).

    The learning-rate schedule spans all ``epochs``. With ``save`` a checkpoint is written
    after every epoch; ``stop_after`` ends this run early (after that many epochs in all), and
    ``resume`` continues from a checkpoint: the result is bit-identical to an uninterrupted
    run with the same ``epochs``, ``seed`` and backend."""
    import oxcore as ox

    # NOTE: everything (initial weights included) is built under the pin: a value computed by
    # another backend may round differently, and a resumed run would then differ
    with (ox.use(backend) if backend else contextlib.nullcontext()):
        return _train(epochs, seed, batch_size, lr, hidden, save, resume, compiled, progress, stop_after)


def _train(epochs: int, seed: int, batch_size: int, lr: float, hidden: int, save: str | None, resume: str | None,
           compiled: bool, progress: bool, stop_after: int | None) -> dict[str, Any]:
    import numpy as np

    import oxcore as ox

    xtr, ytr, xte, yte = load_digits_split()
    steps_per_epoch = -(-len(xtr) // batch_size)
    total = epochs * steps_per_epoch
    ox.random.seed(seed)
    model = digits_mlp(hidden)
    opt = _optimizer(lr, warmup=min(2 * steps_per_epoch, max(total // 10, 1)), total=total)
    start_epoch = 0
    if resume:
        rp = Path(resume)
        weights = ox.load(rp)
        model.load_weights(rp)
        opt.load(_optim_path(rp))
        meta = weights.metadata
        start_epoch = int(meta.get("epoch", 0))
        for key, mine in (("seed", seed), ("hidden", hidden), ("epochs", epochs), ("batch_size", batch_size)):
            if key in meta and int(meta[key]) != mine:
                raise click.ClickException(f"{rp} was trained with --{key.replace('_', '-')} {meta[key]}, not {mine}; "
                                           f"a resumed run continues the same run")
    params = model.trainable_parameters()
    state = opt.state if opt.state is not None else opt.init(params)
    step = make_step(model, opt, compiled=compiled)
    loss = acc = float("nan")
    end = epochs if stop_after is None else min(epochs, stop_after)
    t0 = time.perf_counter()
    with _progress(progress, (end - start_epoch) * steps_per_epoch) as bar:
        for epoch in range(start_epoch, end):
            # NOTE: the order of an epoch depends only on (seed, epoch): a resumed run sees the same batches
            order = np.random.default_rng([seed, epoch]).permutation(len(xtr))
            for i in range(steps_per_epoch):
                idx = order[i * batch_size:(i + 1) * batch_size]
                lv, params, state = step(params, state, ox.asarray(xtr[idx]), ox.asarray(ytr[idx]))
                ox.eval(lv, *ox.tree.tree_leaves(params), *ox.tree.tree_leaves(state))
                loss = lv.item()
                bar(loss, acc, epoch)
            model.update(params)
            acc = _accuracy(model, xte, yte)
            bar(loss, acc, epoch, advance=0)
            if save:
                opt.state = state
                meta = {"epoch": epoch + 1, "epochs": epochs, "seed": seed, "hidden": hidden, "batch_size": batch_size}
                # NOTE: optimizer first: a checkpoint whose weights exist always has its state
                opt.save(_optim_path(Path(save)))
                model.save_weights(save, metadata={k: str(v) for k, v in meta.items()})
    seconds = time.perf_counter() - t0
    model.update(params)
    opt.state = state
    return {"accuracy": acc, "loss": loss, "epochs": end, "start_epoch": start_epoch,
            "steps": (end - start_epoch) * steps_per_epoch, "seconds": seconds, "model": model, "optimizer": opt}


@contextlib.contextmanager
def _progress(show: bool, total: int) -> Any:
    if not show:
        yield lambda *a, **k: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.4f}  held-out acc {task.fields[acc]}"),
                  TimeElapsedColumn()) as p:
        task = p.add_task("train", total=total, epoch=0, loss=float("nan"), acc="-")

        def update(loss: float, acc: float, epoch: int, advance: int = 1) -> None:
            p.update(task, advance=advance, loss=loss, epoch=epoch + 1,
                     acc="-" if acc != acc else f"{100 * acc:.2f}%")
        yield update


@train.command("digits")
@click.option("--epochs", default=20, show_default=True, help="Epochs in all (a resumed run continues up to it).")
@click.option("--seed", default=0, show_default=True, help="Seeds the initial weights and the batch order.")
@click.option("--backend", default=None, help="Pin to one backend (default: the scheduler chooses).")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--lr", default=3e-3, show_default=True, help="Peak learning rate (linear warmup, then cosine).")
@click.option("--hidden", default=256, show_default=True, help="MLP width.")
@click.option("--blas-threads", default=1, show_default=True,
              help="BLAS threads for NumPy (0: the library's default).")
@click.option("--compile/--no-compile", "compiled", default=False, show_default=True,
              help="Run the step under oxcore.compile.")
@click.option("--save", default=None, type=click.Path(dir_okay=False),
              help="After every epoch, write the weights here (save_weights) and the optimizer state next to it "
                   "(*.optim.safetensors).")
@click.option("--stop-after", default=None, type=int, help="Stop after this many epochs in all (resume later).")
@click.option("--resume", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Continue from a --save checkpoint (bit-identical to an uninterrupted run).")
def digits(epochs: int, seed: int, backend: str | None, batch_size: int, lr: float, hidden: int, compiled: bool,
           save: str | None, stop_after: int | None, resume: str | None, blas_threads: int) -> None:
    """Train an MLP on the 1,797 8x8 handwritten digits of scikit-learn (20% held out)."""
    limit = contextlib.nullcontext()
    if blas_threads > 0:
        # NOTE: these matrices are small (batch 64 x 256): BLAS threads cost more than they give,
        # and on a busy 2-core machine OpenBLAS's spinning threads made each matmul ~100x slower
        # (a 20-epoch run took 60 s instead of 6 s). threadpoolctl comes with scikit-learn.
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(blas_threads, user_api="blas")
    with limit:
            r = train_digits(epochs=epochs, seed=seed, backend=backend, batch_size=batch_size, lr=lr, hidden=hidden,
                         save=save, resume=resume, compiled=compiled, stop_after=stop_after)
    click.echo(f"held-out accuracy {100 * r['accuracy']:.2f}% after {r['epochs']} epochs "
               f"({r['steps']} steps in {r['seconds']:.1f} s, final batch loss {r['loss']:.4f})")
    if save:
        click.echo(f"saved {save} and {_optim_path(Path(save))}")


def causal_lm(vocab: int, dims: int = 128, heads: int = 4, layers: int = 4, max_len: int = 256) -> Any:
    """A small decoder-only transformer: token embedding, ``layers`` pre-norm blocks with causal
    self-attention (RoPE), a final LayerNorm and a linear head (``oxcore bench train``'s LM)."""
    from oxcore import nn

    class CausalLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, dims)
            self.layers = [nn.TransformerEncoderLayer(dims, heads, rope=nn.RoPE(dims // heads)) for _ in range(layers)]
            self.norm = nn.LayerNorm(dims)
            self.head = nn.Linear(dims, vocab)

        def __call__(self, ids: Any, caches: list | None = None) -> Any:
            h = self.embed(ids)
            for i, layer in enumerate(self.layers):
                h = layer(h, mask="causal", cache=None if caches is None else caches[i])
            return self.head(self.norm(h))
    return CausalLM()
