"""The studio's front door: which requests reach its routes, whoever sends them.

A server on loopback is still reachable by every page the user has open in a browser, so, as
Jupyter's server does:

- **Host**: every request must name the server by an address it was bound to, ``localhost``,
  ``127.0.0.1``, ``[::1]`` or a name given with ``--allow-host``.  A foreign page that points its
  own DNS name at 127.0.0.1 (DNS rebinding) sends that name, and is refused: it can never read the
  API.  A server bound to every address (``0.0.0.0``, ``::``; a token is required there) cannot
  know the names it is reached by, and checks Host only against ``--allow-host`` when given.
- **Origin**: a request that changes state (POST, PUT, PATCH, DELETE) and comes from a browser
  carries ``Origin`` (or at least ``Referer``), which must be this server's own address as its Host
  header names it.  A form or a ``fetch`` another site sends is refused (403) before its body is
  read; a request with neither header (``curl``, a script) is no browser's, and passes.
- **Token** (``--token``): every request carries it, as ``Authorization: Bearer T`` or ``?token=T``
  (images and downloads, which a page cannot give a header), compared as bytes in constant time.

Each refusal is one line of JSON, status 401 or 403.
"""
from __future__ import annotations

import hmac
import logging
from urllib.parse import parse_qsl, urlsplit

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
CHANGES_STATE = ("POST", "PUT", "PATCH", "DELETE")


def host_name(value: str) -> str:
    """The name of a Host header's ``name[:port]`` (``[v6]:port`` too), lower case, port dropped."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """ASGI middleware in front of the studio (see the module docstring)."""

    def __init__(self, app, *, bound: str, token: str | None = None, allow_hosts: tuple[str, ...] = ()):
        self.app = app
        self.token = token.encode() if token is not None else None
        self.allowed = {host_name(h) for h in allow_hosts}
        if bound.lower() not in WILDCARDS:
            self.allowed |= {host_name(bound), *LOOPBACK_NAMES}
        elif not allow_hosts:
            self.allowed = None    # every name: the token guards the door

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        why = self._refusal(scope, headers)
        if why is not None:
            status, message = why
            logger.warning("refused %s %s: %s", scope["method"], scope["path"], message)
            from starlette.responses import JSONResponse
            return await JSONResponse({"error": message}, status_code=status)(scope, receive, send)
        return await self.app(scope, receive, send)

    def _refusal(self, scope, headers: dict) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.allowed is not None and host_name(host) not in self.allowed:
            return 403, (f"this studio answers to {', '.join(sorted(self.allowed))}, not to {host!r}; "
                         "open it at the address hires serve printed (or start it with --allow-host NAME)")
        if scope["method"] in CHANGES_STATE and not self._same_origin(headers, host):
            return 403, "a request from another site's page is refused; use the studio's own page"
        if self.token is not None and not self._carries_token(scope, headers):
            return 401, "this server needs its token"
        return None

    @staticmethod
    def _same_origin(headers: dict, host: str) -> bool:
        origin = headers.get("origin")
        if origin is None:
            referer = headers.get("referer")
            if referer is None:
                return True    # no browser's request
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
        return origin.lower() in (f"http://{host}".lower(), f"https://{host}".lower())

    def _carries_token(self, scope, headers: dict) -> bool:
        given = headers.get("authorization", "").encode("latin-1")
        if given.startswith(b"Bearer "):
            given = given[len(b"Bearer "):].strip()
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        by_query = query.get("token", "").encode("utf-8", "replace")
        # (bytes compared: a non-ASCII value cannot make compare_digest raise)
        return hmac.compare_digest(given, self.token) or hmac.compare_digest(by_query, self.token)
