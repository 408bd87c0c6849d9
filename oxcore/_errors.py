"""The exception hierarchy: every error is an OxcoreError *and* the matching builtin."""

from __future__ import annotations


class OxcoreError(Exception):
    """Base class of every error oxcore raises."""


class ShapeError(OxcoreError, ValueError):
    """Operand shapes do not fit the op (raised when the op is built)."""


class DTypeError(OxcoreError, TypeError):
    """Operand dtypes do not fit the op (raised when the op is built)."""


class AttributeValueError(OxcoreError, ValueError):
    """An op attribute (axis, bits, group size...) is out of range."""


class OpNotSupportedError(OxcoreError, NotImplementedError):
    """No installed backend can run a node, even after decomposition."""


class FallbackError(OxcoreError, RuntimeError):
    """``OXCORE_STRICT=1`` and the plan needed a fallback."""


class CompileError(OxcoreError, RuntimeError):
    """A function cannot be traced by ``oxcore.compile`` (it reads values, mutates an argument...)."""


class DifferentiationError(OxcoreError, TypeError):
    """A function cannot be differentiated or batched as asked (an op without rules, an integer
    input, a non-scalar output for ``grad``, a bad ``argnums`` or ``in_axes``)."""


class PluginError(OxcoreError, RuntimeError):
    """A plugin could not be loaded or registered something invalid."""


class UnknownNameError(OxcoreError, KeyError):
    """A backend, op, kernel or format name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class FormatError(OxcoreError, ValueError):
    """A file is corrupt, truncated or hostile.

    Attributes:
        path: the file.
        offset: byte offset where the problem was found (or None).
        reason: what is wrong.
    """

    def __init__(self, path: object, offset: int | None, reason: str) -> None:
        self.path, self.offset, self.reason = str(path), offset, reason
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{self.path}{where}: {reason}")

    def __reduce__(self) -> tuple:  # NOTE: pickle (multiprocessing, pytest-xdist) re-calls __init__
        return type(self), (self.path, self.offset, self.reason)


# NOTE: tracebacks print `module.qualname`; users meet these as `oxcore.ShapeError` (exported
# there), not as `oxcore._errors.ShapeError`. pickle finds them under `oxcore` too.
for _cls in (OxcoreError, *OxcoreError.__subclasses__()):
    _cls.__module__ = "oxcore"
del _cls
