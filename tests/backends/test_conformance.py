"""The oxcore conformance kit (``oxcore.testing``) on every installed, available backend.

The tests live in ``oxcore.testing.suite`` so third-party backends run the very same ones
(``pytest --oxcore-backend NAME``); the ``oxcore`` pytest plugin parametrizes
``oxcore_backend`` over the installed backends and ``oxcore_case`` over every (case, dtype).
"""

from oxcore.testing.suite import (test_buffers_freed, test_dlpack, test_grad, test_op,  # noqa: F401
                                  test_supports_reasons, test_threads, test_transfers, test_vmap)
