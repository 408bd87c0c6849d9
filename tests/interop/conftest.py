"""SciPy reads SCIPY_ARRAY_API when it is first imported: set it before any test module imports it."""

import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")
