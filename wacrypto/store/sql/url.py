"""Store URLs: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``postgresql://user:pw@host:5432/db``,
``mysql://user:pw@host:3306/db``.

User name, password, host and database are percent-decoded, so any password works once its reserved
characters are percent-encoded (``quote(password, safe="")``). The userinfo is split at the *last*
``@`` so a literal ``@`` in a password is also accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from wacrypto.errors import InvalidArgumentError

__all__ = ["StoreURL", "parse_store_url"]

_SCHEMES = {
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "pgsql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


@dataclass(frozen=True)
class StoreURL:
    backend: str
    path: str = ""  # sqlite file
    host: str = ""
    port: int = 0
    user: str = ""
    password: str | None = field(default=None, repr=False)
    database: str = ""
    params: dict[str, str] = field(default_factory=dict)

    def redacted(self) -> str:
        """The URL with the password hidden (for messages and logs)."""
        if self.backend == "sqlite":
            return f"sqlite:///{self.path}"
        pw = ":***" if self.password is not None else ""
        return f"{self.backend}://{self.user}{pw}@{self.host}:{self.port}/{self.database}"


def parse_store_url(url: str) -> StoreURL:
    if not isinstance(url, str) or "://" not in url:
        raise InvalidArgumentError("store URL must look like sqlite:///path, postgresql://... or mysql://...")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower().split("+", 1)[0]  # allow postgresql+psycopg://, mysql+pymysql://
    backend = _SCHEMES.get(scheme)
    if backend is None:
        raise InvalidArgumentError(f"unknown store URL scheme {scheme!r} (use sqlite, postgresql or mysql)")
    query = ""
    if backend == "sqlite":
        if "?" in rest:
            rest, query = rest.split("?", 1)
        if not rest.startswith("/"):
            raise InvalidArgumentError("sqlite URL must be sqlite:///relative/path or sqlite:////absolute/path")
        path = unquote(rest[1:])
        if not path:
            raise InvalidArgumentError("sqlite URL has no file path")
        return StoreURL("sqlite", path=path, params=dict(parse_qsl(query)))
    # network URL: userinfo is everything before the last '@' that precedes the host part
    at = rest.rfind("@")
    userinfo, hostpart = (rest[:at], rest[at + 1 :]) if at >= 0 else ("", rest)
    if "?" in hostpart:
        hostpart, query = hostpart.split("?", 1)
    hostport, _, db = hostpart.partition("/")
    user, sep, pw = userinfo.partition(":")
    password = unquote(pw) if sep else None
    host = hostport
    port = _DEFAULT_PORTS[backend]
    if hostport.startswith("["):  # [ipv6]:port
        end = hostport.find("]")
        host = hostport[1:end]
        tail = hostport[end + 1 :]
        if tail.startswith(":") and tail[1:]:
            port = _port(tail[1:])
    elif ":" in hostport:
        host, p = hostport.rsplit(":", 1)
        if p:
            port = _port(p)
    return StoreURL(
        backend,
        host=unquote(host) or "127.0.0.1",
        port=port,
        user=unquote(user),
        password=password,
        database=unquote(db),
        params=dict(parse_qsl(query)),
    )


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidArgumentError(f"bad port {text!r} in store URL")
    return int(text)
