"""Which parser an agent's connections use: the ``http_parser`` option."""

from __future__ import annotations

from collections.abc import Callable

from ._options import HttpParser, httptools_available
from ._wire import H11Wire, Wire

__all__ = ["AUTO", "wire_for"]

#: What ``"auto"`` means: None for httptools when installed, else h11. The test suite sets it to
#: run the same behaviour tests on each parser.
AUTO: HttpParser | None = None


def wire_for(http_parser: HttpParser) -> Callable[[int], Wire]:
    """The ``Wire`` class for ``http_parser``; ``"auto"`` picks httptools when installed."""
    if http_parser == "auto":
        http_parser = AUTO or ("httptools" if httptools_available() else "h11")
    if http_parser == "h11":
        return H11Wire
    from ._wire_httptools import HttptoolsWire

    return HttptoolsWire
