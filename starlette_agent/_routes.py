"""Where a request's socket goes, and what a pooled socket must match to serve it.

Two requests may share a socket only when they would open the same socket: same origin, same
local address, same proxy, and for https the same TLS identity (verification mode, and which
SSL context). That is the pool key, ``Agent.get_name()``; it names the proxy without its
credentials, so a key is safe to log and to show in ``stats()``.
"""

from __future__ import annotations

import ssl
import weakref
from typing import Any

from ._proxy import Proxy, ProxyRoutes
from ._urls import Origin

__all__ = ["MAX_CACHED_POOL_KEYS", "Routes"]

#: Pool keys remembered per agent; past this the oldest is forgotten (and recomputed if needed),
#: since a service may call unboundedly many origins, or make an SSL context per request.
MAX_CACHED_POOL_KEYS = 1024


class Routes:
    """One agent's routing: pool keys, TLS contexts and proxies, per origin."""

    def __init__(
        self,
        *,
        local_address: str | None,
        ssl_context: ssl.SSLContext | None,
        proxy: str | None,
        trust_env: bool,
    ) -> None:
        self._local_address = local_address
        self._default_context = ssl_context
        self.proxies = ProxyRoutes(proxy=proxy, trust_env=trust_env)
        self._tls_ids: weakref.WeakKeyDictionary[ssl.SSLContext, int] = weakref.WeakKeyDictionary()
        self._last_tls_id = 0  # ids are never reused, unlike id() of a collected context
        self._keys: dict[tuple[Any, ...], str] = {}

    def key(self, origin: Origin, ssl_context: ssl.SSLContext | None) -> str:
        """The pool key of a request to ``origin`` (with its own ``ssl_context``, if any)."""
        if origin.scheme != "https":
            cache_key: tuple[Any, ...] = (origin,)
        else:
            context = ssl_context or self._default_context
            if context is None:
                cache_key = (origin, None)
            else:
                # Read live: a context's verification settings can change after creation.
                cache_key = (
                    origin,
                    self._tls_id(context),
                    context.verify_mode,
                    context.check_hostname,
                )
        key = self._keys.get(cache_key)
        if key is None:
            if len(self._keys) >= MAX_CACHED_POOL_KEYS:
                del self._keys[next(iter(self._keys))]  # the oldest entry
            key = self._keys[cache_key] = self._describe(cache_key)
        return key

    def proxy_for(self, origin: Origin) -> Proxy | None:
        return self.proxies.proxy_for(origin)

    def ssl_context_for(
        self, origin: Origin, ssl_context: ssl.SSLContext | None
    ) -> ssl.SSLContext | None:
        """The SSL context a new socket to ``origin`` is opened with (None for http)."""
        if origin.scheme != "https":
            return None
        if ssl_context is not None:
            return ssl_context
        if self._default_context is None:
            # Created on first use (loading the system CA store takes milliseconds), and not
            # kept as this agent's own: the pool key of "no context given" must not change.
            return _shared_default_context()
        return self._default_context

    def _describe(self, cache_key: tuple[Any, ...]) -> str:
        origin: Origin = cache_key[0]
        parts = [str(origin)]
        if self._local_address is not None:
            parts.append(f"local={self._local_address}")
        proxy = self.proxy_for(origin)
        if proxy is not None:
            parts.append(f"proxy={proxy}")  # str(proxy) never holds the credentials
        if origin.scheme == "https":
            if cache_key[1] is None:
                parts.append("tls=verify,context=default")
            else:
                _, tls_id, verify_mode, check_hostname = cache_key
                if verify_mode == ssl.CERT_NONE:
                    mode = "no-verify"
                elif check_hostname:
                    mode = "verify"
                else:
                    mode = "verify-cert-only"
                parts.append(f"tls={mode},context={tls_id}")
        return ";".join(parts)

    def _tls_id(self, context: ssl.SSLContext) -> int:
        tls_id = self._tls_ids.get(context)
        if tls_id is None:
            self._last_tls_id += 1
            tls_id = self._tls_ids[context] = self._last_tls_id
        return tls_id


_default_context: ssl.SSLContext | None = None


def _shared_default_context() -> ssl.SSLContext:
    global _default_context
    if _default_context is None:
        _default_context = ssl.create_default_context()
    return _default_context
