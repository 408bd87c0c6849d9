"""The API for plugin authors: everything a backend, kernel or format package needs.

Example:
    >>> from oxcore.extend import Backend, Kernel, Device, hookimpl, PLUGIN_API
"""

from ._backend import Backend, Instruction, Kernel, Segment
from ._device import HOST, Device
from ._dtypes import ALL as DTYPES, FLOATING, INTEGER, DType
from ._errors import FormatError, PluginError
from ._format import Format, FormatCapabilities, LazyFile, TensorFile, TensorInfo
from ._array import build, host_leaf, leaf
from ._graph import Node
from ._io import host_array
from ._osutil import atomic_write
from ._mapping import MappedFile
from ._plugins import PLUGIN_API, hookimpl, manager, reload_plugins
from ._registry import REGISTRY, REQUIRED, Attr, Category, OpDef, TuneCase, register_op
from .ops._rules import binary, broadcast_shapes, same_as_input, unary

__all__ = ["host_leaf", "leaf", "Backend", "Kernel", "Segment", "Instruction", "Device", "HOST", "DType", "DTYPES", "FLOATING", "INTEGER",
           "FormatError", "PluginError", "PLUGIN_API", "hookimpl", "manager", "reload_plugins", "REGISTRY",
           "Category", "Node", "OpDef", "Attr", "REQUIRED", "build", "register_op", "TuneCase",
           "same_as_input", "unary", "binary",
           "broadcast_shapes", "wrap", "Format", "FormatCapabilities", "LazyFile", "TensorFile", "TensorInfo", "host_array", "atomic_write", "MappedFile"]


def wrap(node: Node) -> "Array":
    """The Array over an existing graph node (e.g. an input of a lazy node a plugin rewrites).

    Example:
        >>> import oxcore as ox
        >>> from oxcore.extend import wrap
        >>> y = ox.asarray([1.0, 2.0]) * 3
        >>> x = wrap(y._node.inputs[0])
        >>> x.tolist()
        [1.0, 2.0]
    """
    from ._array import Array

    return Array._wrap(node)
