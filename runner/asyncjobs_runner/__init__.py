"""asyncjobs_runner: the child side of asyncjobs' process mode (standard library only).

``python -m asyncjobs_runner run TARGET`` runs one execution; ``PROTOCOL.md`` beside this
package is the protocol it speaks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .protocol import PROTOCOL_VERSION as PROTOCOL_VERSION

if TYPE_CHECKING:
    from ._child import Context as Context

__version__ = "0.1.0"
__all__ = ("PROTOCOL_VERSION", "Context", "__version__")


def __getattr__(name: str) -> object:
    # Lazily: importing the package must not set up a child.
    if name == "Context":
        from ._child import Context

        return Context
    raise AttributeError(f"module 'asyncjobs_runner' has no attribute {name!r}")
