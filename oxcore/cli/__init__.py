"""The ``oxcore`` command line (also ``python -m oxcore``).

Subcommands live in small modules of this package; plugins add more through the
``oxcore_register_commands`` hook. Heavy imports happen inside commands so ``--help`` is fast.
"""

from __future__ import annotations

import importlib

import click

# NOTE: modules that attach commands to `main` when imported; add yours here.
COMMAND_MODULES = ("oxcore.cli.listing", "oxcore.cli.demo", "oxcore.cli.bench",
                   "oxcore.cli.kernels", "oxcore.cli.autotune", "oxcore.cli.bench_plan", "oxcore.cli.io",
                   "oxcore.cli.plugin_new", "oxcore.cli.validate", "oxcore.cli.train")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oxcore")
def main() -> None:
    """oxcore: lazy arrays, pluggable backends, kernels chosen by measurement."""


@main.group()
def bench() -> None:
    """Benchmarks: median and spread against the direct library, saved as JSON."""


def _attach() -> None:
    for mod in COMMAND_MODULES:
        importlib.import_module(mod)
    try:
        from .._plugins import manager

        # NOTE: only imported, not collected: no backend factory runs (no mlx import, no GPU
        # runtime started) just to list the commands; a broken plugin's command is its own failure
        manager(collect=False).call_each("oxcore_register_commands", cli=main)
    except Exception as e:
        click.echo(f"warning: plugins could not be loaded: {e}", err=True)


_attach()
