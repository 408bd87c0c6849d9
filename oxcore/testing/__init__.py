"""oxcore's conformance kit: per-op cases with float64 references (the core's in ``CASES``,
plugins' added through the ``oxcore_register_test_cases`` hook), comparison helpers with
per-dtype tolerances or an NMSE bound (see ``oxcore.testing.check``), and a pytest plugin
(``pytest --oxcore-backend NAME``, ``--oxcore-format NAME``) that runs the suite against any
installed backend.

Example:
    >>> from oxcore.testing import CASES, cases_for
    >>> cases_for("softmax")[0].op
    'softmax'
"""

from .cases import CASES, Case, all_cases, cases_for, iter_cases, plugin_cases, sample_for
from .check import TOLERANCES, assert_close, assert_nmse, nmse, run_in_threads, tolerance

__all__ = ["CASES", "Case", "all_cases", "cases_for", "iter_cases", "plugin_cases", "sample_for", "TOLERANCES",
           "assert_close", "assert_nmse", "nmse", "run_in_threads", "tolerance"]
