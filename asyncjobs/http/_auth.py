"""Who may talk to the API: the bind check, the Host allowlist, the Origin check, the token.

The guard is plain ASGI middleware in front of everything (routes, SSE, ``/openapi.json``):
it answers before any route code runs, so no route can forget it.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from typing import TYPE_CHECKING

from ._json import error_response

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 4096
# RFC 6750's b64token, plus the other visible ASCII characters people put in secrets.
_TOKEN = re.compile(r"[\x21-\x7e]+")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def check_token(token: str | None) -> str | None:
    """Return ``token`` if it can be a bearer token (or ``None``).

    :raises ValueError: saying what is wrong with it, without quoting it (it is a secret)
    """
    if token is None:
        return None
    if not isinstance(token, str):
        raise ValueError(f"token must be a string, got a {type(token).__name__}")
    if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        raise ValueError(
            f"token must have {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} characters, got {len(token)}"
        )
    if not _TOKEN.fullmatch(token):
        raise ValueError("token must be visible ASCII characters without spaces")
    return token


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name, no port) is this machine's loopback."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen on anything but loopback without a token.

    :raises ValueError: naming the host, and saying how to set a token
    """
    if not isinstance(host, str):
        raise ValueError(f"host must be an address or a name, got {host!r}")
    if token is None and not is_loopback(host):
        raise ValueError(
            f"refusing to serve on {host!r} without a token: anyone who can reach it could "
            "run and stop jobs. Set $ASYNCJOBS_TOKEN (or --token), or bind to 127.0.0.1"
        )


def host_names(allowed: Sequence[str] | None, *, bind: str | None = None) -> frozenset[str]:
    """Return the normalized Host allowlist: loopback names by default, plus ``bind``.

    :raises ValueError: naming an entry that is not a host name or address
    """
    if allowed is None:
        names = list(LOOPBACK_HOSTS)
        if bind and not _is_wildcard(bind):
            names.append(bind)
    elif isinstance(allowed, str):
        raise ValueError(f"allowed_hosts must be a list of names, got the string {allowed!r}")
    else:
        names = list(allowed)
    out = set()
    for name in names:
        if (
            not isinstance(name, str)
            or not name
            or (any(c in name for c in " /\\@:[]") and (not _is_ipv6(name)))
        ):
            raise ValueError(
                f"allowed_hosts entries are host names or addresses without port, got {name!r}"
            )
        out.add(name.strip("[]").lower())
    return frozenset(out)


def origins(allowed: Sequence[str] | None) -> tuple[str, ...]:
    """Return the CORS origins, checked.

    :raises ValueError: naming an entry that is not ``scheme://host[:port]``
    """
    if allowed is None:
        return ()
    if isinstance(allowed, str):
        raise ValueError(f"cors_origins must be a list of origins, got the string {allowed!r}")
    out = []
    for origin in allowed:
        if not isinstance(origin, str) or not re.fullmatch(r"https?://[^/\s?#]+|\*", origin):
            raise ValueError(
                f"cors_origins entries look like 'https://app.example' (no path), got {origin!r}"
            )
        out.append(origin.lower())
    return tuple(out)


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "[::]")


def _is_ipv6(name: str) -> bool:
    try:
        return ipaddress.ip_address(name.strip("[]")).version == 6
    except ValueError:
        return False


def _split_host(value: str) -> str:
    """Return the host of a ``Host`` header value, lower-case, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else ""
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostGuard:
    """ASGI middleware, outermost: the Host allowlist, then the Origin check.

    It comes first so that a DNS-rebound page learns nothing, not even whether a token is
    needed.
    """

    def __init__(
        self, app: ASGIApp, *, allowed_hosts: frozenset[str], cors_origins: Iterable[str]
    ) -> None:
        self._app = app
        self._hosts = allowed_hosts
        self._any_host = "*" in allowed_hosts
        self._origins = frozenset(cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = _headers(scope)
            host = headers.get(b"host", b"").decode("latin-1").strip().lower()
            refusal = self._check_host(host) or self._check_origin(scope, headers, host)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        elif scope["type"] != "lifespan":
            return  # websockets: not served
        await self._app(scope, receive, send)

    def _check_host(self, host: str) -> Response | None:
        name = _split_host(host)
        if self._any_host or name in self._hosts:
            return None
        return error_response(
            403,
            "ForbiddenHost",
            f"requests for host {name!r} are refused; allowed: {', '.join(sorted(self._hosts))}",
        )

    def _check_origin(
        self, scope: Scope, headers: dict[bytes, bytes], host: str
    ) -> Response | None:
        # Browsers send Origin with every cross-site POST, even a plain form's: refusing a
        # foreign one stops a web page from driving a token-less local API (CSRF).
        origin = headers.get(b"origin")
        if origin is None or scope["method"] in SAFE_METHODS:
            return None
        text = origin.decode("latin-1").strip().lower()
        if (
            "*" in self._origins
            or text in self._origins
            or text
            in (
                f"http://{host}",
                f"https://{host}",
            )
        ):
            return None
        return error_response(
            403,
            "ForbiddenOrigin",
            f"{scope['method']} from origin {text!r} is refused; list it in cors_origins to "
            "allow it",
        )


class TokenGuard:
    """ASGI middleware, inside CORS: every request must carry the bearer token.

    CORS preflights are answered outside it (they carry no credentials, by design).
    """

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self._app = app
        self._expected = None if token is None else f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._expected is not None:
            given = _headers(scope).get(b"authorization", b"")
            # Normalise the scheme's case only, then compare in constant time: the
            # comparison must not reveal how much of the token was right.
            if given[:7].lower() == b"bearer ":
                given = b"Bearer " + given[7:]
            if not hmac.compare_digest(given, self._expected):
                problem = "missing" if not given else "wrong"
                refusal = error_response(
                    401,
                    "Unauthorized",
                    f"{problem} bearer token: send 'Authorization: Bearer <token>'",
                    headers={"WWW-Authenticate": 'Bearer realm="asyncjobs"'},
                )
                await refusal(scope, receive, send)
                return
        await self._app(scope, receive, send)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # The first value of each header wins; a second Host or Authorization is ignored.
    out: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        out.setdefault(name.lower(), value)
    return out
