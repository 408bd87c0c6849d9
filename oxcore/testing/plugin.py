"""The ``oxcore`` pytest plugin (entry point ``pytest11``), installed with oxcore.

Options:

``--oxcore-backend NAME`` (repeatable)
    Run the conformance suite (``oxcore.testing.suite``) against that installed backend:
    every op it claims (plugin ops included: the cases plugins add with the
    ``oxcore_register_test_cases`` hook), in every dtype, pinned to it and checked against
    float64 NumPy, plus the protocol checks (transfers, DLPack, ``supports`` reasons, threads, freed buffers).
    With no test paths on the command line only the suite runs; with paths, those tests run
    and ``oxcore_backend`` is restricted to the named backends.
``--oxcore-format NAME`` (repeatable)
    Run the format round-trip and hostile-file checks for that format (they need
    ``oxcore.testing.formats``; without it they skip and say so).

Fixtures/parameters it provides to any test that names them: ``oxcore_backend`` (every
installed, available backend, or the ``--oxcore-backend`` ones), ``oxcore_case`` (every
``(Case, dtype)`` of ``oxcore.testing.cases``, with the cases plugins add through the
``oxcore_register_test_cases`` hook), ``oxcore_grad_case`` and ``oxcore_vmap_case`` (the core's
cases only) and ``oxcore_format``.

hypothesis profiles (``--hypothesis-profile NAME`` picks one): ``fast`` (the default: 5
examples per property, no deadline), ``ci`` (``fast``, derandomized and without the example
database; the default when the ``CI`` environment variable is set) and ``thorough`` (20
examples per property, 4x as many: for a nightly run or before a release).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

try:
    from hypothesis import HealthCheck, settings

    # NOTE: fast is the default so that a newcomer's `./dev pytest` on 2 cores takes minutes, not
    # a quarter of an hour (tests/backends runs thousands of properties); more examples on request
    _SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile("fast", max_examples=5, deadline=None, print_blob=True,
                              suppress_health_check=_SLOW_IS_FINE)
    settings.register_profile("ci", parent=settings.get_profile("fast"), derandomize=True, database=None)
    settings.register_profile("thorough", max_examples=20, deadline=None, print_blob=True,
                              suppress_health_check=_SLOW_IS_FINE)
except ImportError:  # NOTE: the suite needs hypothesis; the options still parse without it
    settings = None

SUITE = Path(__file__).with_name("suite.py")


def pytest_addoption(parser: Any) -> None:
    g = parser.getgroup("oxcore", "oxcore conformance kit")
    g.addoption("--oxcore-backend", action="append", default=[], metavar="NAME",
                help="run the oxcore conformance suite against this installed backend (repeatable)")
    g.addoption("--oxcore-format", action="append", default=[], metavar="NAME",
                help="run the round-trip and hostile-file checks for this oxcore format (repeatable)")


def pytest_configure(config: Any) -> None:
    if "OXCORE_PROFILE" not in os.environ:
        # NOTE: tests must not depend on what `oxcore autotune` measured on this machine (a tuned
        # user profile changes placements): each session starts from an empty profile of its own
        import tempfile

        os.environ["OXCORE_PROFILE"] = os.path.join(tempfile.mkdtemp(prefix="oxcore-test-profile-"), "profile.json")
    if settings is not None and not config.getoption("hypothesis_profile", None):
        settings.load_profile("ci" if os.environ.get("CI") else "fast")
    backends, formats = config.getoption("oxcore_backend"), config.getoption("oxcore_format")
    if not (backends or formats):
        return
    _check_names(backends)
    explicit = getattr(config, "args_source", None) == pytest.Config.ArgsSource.ARGS
    if not explicit:  # NOTE: bare `pytest --oxcore-backend X` runs the suite, not the project's tests
        config.args[:] = [str(SUITE)]


def pytest_collection_modifyitems(config: Any, items: list) -> None:
    # NOTE: `--oxcore-format X` alone checks formats only, not every installed backend
    if config.getoption("oxcore_format") and not config.getoption("oxcore_backend"):
        drop = {id(i) for i in items if "oxcore_backend" in getattr(i, "fixturenames", ()) and Path(str(i.path)) == SUITE}
        if drop:
            config.hook.pytest_deselected(items=[i for i in items if id(i) in drop])
            items[:] = [i for i in items if id(i) not in drop]


def _check_names(names: list[str]) -> None:
    if not names:
        return
    from oxcore.extend import manager

    m = manager()
    for n in names:
        if n not in m.backends:
            raise pytest.UsageError(f"--oxcore-backend: unknown backend {n!r}. Installed backends: "
                                    f"{', '.join(m.backends) or '(none)'}")


def _backend_params(config: Any) -> list[Any]:
    from oxcore.extend import manager

    m = manager()
    names = config.getoption("oxcore_backend") or list(m.backends)
    params = []
    for n in names:
        ok, why = m.available(m.backends[n])
        params.append(pytest.param(n, id=n) if ok else
                      pytest.param(n, id=n, marks=pytest.mark.skip(reason=f"backend {n} is not available: {why}")))
    return params


def pytest_generate_tests(metafunc: Any) -> None:
    names = metafunc.fixturenames
    if "oxcore_backend" in names:
        metafunc.parametrize("oxcore_backend", _backend_params(metafunc.config), scope="session")
    if "oxcore_case" in names:
        from .cases import iter_cases, plugin_case_errors

        # NOTE: a plugin whose cases could not be collected shows as one failing test, not as silence
        metafunc.parametrize("oxcore_case", [pytest.param((c, dt), id=f"{c.id}-{dt.name}") for c, dt in iter_cases()]
                             + [pytest.param((e, None), id=e.id) for e in plugin_case_errors()])
    if "oxcore_grad_case" in names:
        from .cases import CASES
        from .grads import GRAD_DTYPES, differentiable

        metafunc.parametrize("oxcore_grad_case", [pytest.param((c, dt), id=f"{c.id}-{dt.name}") for c in CASES
                                                  for dt in GRAD_DTYPES if differentiable(c, dt)])
    if "oxcore_vmap_case" in names:
        from .cases import CASES

        # NOTE: ops without array inputs (full, arange...) have nothing to batch
        metafunc.parametrize("oxcore_vmap_case", [pytest.param((c, c.dtypes[0]), id=f"{c.id}-{c.dtypes[0].name}")
                                                  for c in CASES if c.example(c.dtypes[0])[0]])
    if "oxcore_format" in names:
        fmts = metafunc.config.getoption("oxcore_format")
        metafunc.parametrize("oxcore_format", [pytest.param(f, id=f) for f in fmts] or [
            pytest.param(None, id="no-format", marks=pytest.mark.skip(reason="pass --oxcore-format NAME to check a format"))])
