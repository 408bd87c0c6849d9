"""The hooks an oxcore plugin can implement (pluggy project ``oxcore``).

A plugin is a module named by an entry point in the group ``oxcore``::

    [project.entry-points.oxcore]
    my_backend = "my_package.plugin"

The module sets ``OXCORE_PLUGIN_API = 1`` and implements any of the hooks below with
``@oxcore.hookimpl``. Collections are handed a ``register`` callback; call it once per item.
Each plugin's hooks run in their own ``try``: one that raises is listed as failed and never
breaks the others or the core. Keep heavy imports (mlx, gguf) inside the hook bodies or the
objects' factories so ``oxcore --help`` stays fast.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("oxcore")

# ---------------------------------------------------------------------------------------------
# Backends and kernels
# ---------------------------------------------------------------------------------------------


@hookspec
def oxcore_register_backends(register: Callable[[Any], None]) -> None:
    """Register device backends.

    Called once, when oxcore first needs its backends (first eval, ``oxcore backends list``).

    :param register: call ``register(backend)`` with an ``oxcore.extend.Backend`` instance for
        each backend the plugin provides. A backend whose library is missing should still be
        registered: its ``available()`` then says why it cannot run.
    """


@hookspec
def oxcore_register_kernels(register: Callable[[Any], None]) -> None:
    """Register kernels for any op on any backend, including backends of other packages.

    Called after every plugin's backends are registered.

    :param register: call ``register(kernel)`` with an ``oxcore.extend.Kernel`` whose
        ``backend`` names the target backend (``"cpu_numpy"``, ``"metal_fused"``...). A kernel
        for a backend that is not installed is listed but never used.
    """


# ---------------------------------------------------------------------------------------------
# Ops, formats, models, commands
# ---------------------------------------------------------------------------------------------


@hookspec
def oxcore_register_ops(register: Callable[..., Any]) -> None:
    """Declare new ops.

    Called once at plugin load, before backends. Every new op needs a decomposition into
    existing ops, so all backends can run it before anyone writes a kernel.

    :param register: ``register(name, category, infer, attrs=(), decompose=..., doc=...)``,
        the signature of ``oxcore.extend.register_op``; each of ``attrs`` is a name or an
        ``oxcore.extend.Attr`` (type, default, normalisation), shown by ``oxcore ops list``.
        ``tune=cases`` (``cases(dtype, quick) -> list[oxcore.extend.TuneCase]``) gives
        ``oxcore autotune`` the op's representative shapes and input values;
        ``tune_attrs=("ggml_type",)`` names attributes whose values key its profile entries
        (measured and chosen for separately), beyond dtypes and shape buckets.
    """


@hookspec
def oxcore_register_formats(register: Callable[[Any], None]) -> None:
    """Register file formats.

    :param register: call ``register(fmt)`` with an ``oxcore.extend.Format`` (``name``,
        ``suffixes``, ``capabilities``, ``sniff``, ``open``, ``save``).
    """


@hookspec
def oxcore_register_commands(cli: Any) -> None:
    """Add subcommands to the ``oxcore`` CLI.

    Called when the CLI starts.

    :param cli: the root ``click.Group``; add commands with ``@cli.command()`` or
        ``cli.add_command``.
    """


@hookspec
def oxcore_register_models(register: Callable[..., None]) -> None:
    """Register model architectures for ``oxcore.models.load`` (and ``oxcore embed``/``generate``).

    Called the first time a model is loaded or listed.

    :param register: ``register(name, loader, *, formats=("gguf",), doc="", default=None)``.
        ``name`` is the architecture as the file states it (GGUF ``general.architecture``, e.g.
        ``"gemma3"``; for safetensors, the ``model_type`` of the ``config.json`` beside the file,
        e.g. ``"bert"``). ``loader(file, metadata)`` takes the opened ``oxcore.TensorFile`` and its
        metadata (for safetensors, the parsed ``config.json``) and returns the model object.
        ``default``, when given, is a zero-argument callable returning the path of an installed
        model of this architecture (or None), used when ``load`` is given the bare name.
    """


@hookspec
def oxcore_register_test_cases(register: Callable[[Any], None]) -> None:
    """Add conformance-kit cases for the plugin's ops (or for ops its kernels implement).

    Called the first time the kit lists its cases (``pytest --oxcore-backend NAME``,
    ``oxcore.testing.plugin_cases()``), once per loaded plugin set. The kit then runs each case
    on every backend it checks, pinned there, against the case's reference, exactly like the
    core's cases (``test_op``, ``test_supports_reasons``). A hook that raises adds no case and
    shows as a failing ``test_op[...-plugin-cases[NAME]]``.

    :param register: call ``register(case)`` with an ``oxcore.testing.Case`` whose ``op`` is a
        registered op and whose ``id`` (``op[name]``) no other case has. ``Case(nmse=...)``
        compares by normalized mean squared error instead of elementwise.
    """


@hookspec
def oxcore_default_profiles() -> Any:
    """Ship default autotune measurements.

    :returns: a list of profile entries (see ``oxcore.profile``) or None. Measurements taken on
        the user's machine always win over shipped ones.
    """
