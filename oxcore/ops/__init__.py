"""Every public op function. ``oxcore`` re-exports these; importing declares the registry."""

from .creation import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .manipulation import *  # noqa: F401,F403
from .nn import *  # noqa: F401,F403
from .quant import *  # noqa: F401,F403
from .reduction import *  # noqa: F401,F403
from .searching import *  # noqa: F401,F403
from .sets import *  # noqa: F401,F403
from .sorting import *  # noqa: F401,F403
from . import random  # noqa: F401
from . import creation, elementwise, indexing, linalg, manipulation, nn, quant, reduction, searching, sets, sorting
from . import factorizations, fft  # noqa: F401  (oxcore.linalg's and oxcore.fft's registry ops)
from . import _batching, _derivatives  # noqa: F401  (attach the VJP/JVP/batching rules to the registry)

__all__ = [n for m in (creation, elementwise, indexing, linalg, manipulation, nn, quant, reduction, searching, sets,
                       sorting)
           for n in m.__all__]
