"""oxcore's conformance kit: per-op cases with float64 references, one comparison helper with
per-dtype tolerances (see ``oxcore.testing.check``), and a pytest plugin
(``pytest --oxcore-backend NAME``, ``--oxcore-format NAME``) that runs the suite against any
installed backend.

Example:
    >>> from oxcore.testing import CASES, cases_for
    >>> cases_for("softmax")[0].op
    'softmax'
"""

from .cases import CASES, Case, cases_for, iter_cases, sample_for
from .check import TOLERANCES, assert_close, run_in_threads, tolerance

__all__ = ["CASES", "Case", "cases_for", "iter_cases", "sample_for", "TOLERANCES", "assert_close", "run_in_threads", "tolerance"]
