"""Who is using the dashboards: the auth mode, the users file and the identity an action records.

Three modes (``qfleet dashboards --auth``):

- ``none`` (the default): no login, only on a loopback address; actions record ``local:<account>``, the account
  that runs the dashboards (anyone who can reach the loopback port acts as it).
- ``users``: a login form checked against a users file of ``name:argon2-hash`` lines (argon2id, salted, from
  ``argon2-cffi``); the file must not be readable by other users. ``qfleet dashboards users add NAME`` writes it.
- ``proxy``: a reverse proxy authenticates and passes the user name in a header (``--proxy-header``); the header
  is trusted only in this mode, and the proxy must strip any copy the client sent.

The Streamlit side (the login form, the gate) is :func:`qfleet.dashboards.ui.identity`; this module has no Streamlit
import so that the CLI can check a configuration before it starts the server. The mode reaches the Streamlit
process through its environment (:meth:`AuthConfig.to_env`), never its command line.
"""

from __future__ import annotations

import ipaddress
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from qfleet.files import write_atomic

__all__ = [
    "ENV_AUTH",
    "ENV_PROXY_HEADER",
    "ENV_USERS_FILE",
    "MODES",
    "AuthConfig",
    "AuthError",
    "add_user",
    "hash_password",
    "is_loopback",
    "proxy_identity",
    "read_users",
    "verify",
]

ENV_AUTH = "QFLEET_DASHBOARDS_AUTH"
ENV_USERS_FILE = "QFLEET_DASHBOARDS_USERS_FILE"
ENV_PROXY_HEADER = "QFLEET_DASHBOARDS_PROXY_HEADER"
MODES = ("none", "users", "proxy")

# A user name: what an acknowledgement records, so printable and without the file's separator.
_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,64}\Z")
_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}\Z")
# Verified against when the name is unknown, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = ("$argon2id$v=19$m=65536,t=3,p=4$J/X1yA5B4nqYK3Q0O9aqOA$"
               "R7OFOFcYyk2ZaFjPnBkr3bBNPUfXfNhQSJBbzmyYUwo")


class AuthError(ValueError):
    """A bad auth setting or users file; the message names it and says how to fix it."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    """The dashboards' auth mode and its settings."""

    mode: str = "none"
    users_file: Path | None = None
    proxy_header: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise AuthError(f"--auth {self.mode!r} is not a mode; use one of {', '.join(MODES)}")
        if self.mode == "users" and self.users_file is None:
            raise AuthError("--auth users needs --users-file PATH (create it with: qfleet dashboards users add NAME "
                            "--users-file PATH)")
        if self.mode == "proxy" and not (self.proxy_header and _HEADER.match(self.proxy_header)):
            raise AuthError(f"--auth proxy needs --proxy-header NAME (a header name such as X-Forwarded-User), "
                            f"got {self.proxy_header!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AuthConfig:
        """The config the CLI passed to the Streamlit process (``none`` when nothing was set)."""
        users = environ.get(ENV_USERS_FILE)
        return cls(mode=environ.get(ENV_AUTH) or "none", users_file=Path(users) if users else None,
                   proxy_header=environ.get(ENV_PROXY_HEADER) or None)

    def to_env(self) -> dict[str, str]:
        """The environment variables :meth:`from_env` reads back."""
        env = {ENV_AUTH: self.mode}
        if self.users_file is not None:
            env[ENV_USERS_FILE] = str(self.users_file.resolve())
        if self.proxy_header:
            env[ENV_PROXY_HEADER] = self.proxy_header
        return env

    def check(self, host: str) -> None:
        """Refuse a configuration that would serve without authentication off loopback, or a bad users file.

        Raises:
            AuthError: ``none`` on a non-loopback ``host``; an unreadable, shared or empty users file.
        """
        if self.mode == "none" and not is_loopback(host):
            raise AuthError(f"--host {host} is not a loopback address and --auth is none: anyone who can reach it "
                            "could acknowledge and silence; add --auth users --users-file PATH or --auth proxy "
                            "--proxy-header X-Forwarded-User, or bind 127.0.0.1")
        if self.mode == "users":
            assert self.users_file is not None
            if not read_users(self.users_file):
                raise AuthError(f"users file {str(self.users_file)!r} holds no users; add one with: "
                                f"qfleet dashboards users add NAME --users-file {self.users_file}")


def read_users(path: Path) -> dict[str, str]:
    """``{name: argon2 hash}`` of the users file ``path``.

    Raises:
        AuthError: missing or unreadable, readable or writable by other users, or a malformed line.
    """
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise AuthError(f"users file {str(path)!r} cannot be read ({e.strerror}); create it with: "
                        f"qfleet dashboards users add NAME --users-file {path}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuthError(f"users file {str(path)!r} is readable by other users (mode {oct(st.st_mode & 0o777)}); "
                        f"run: chmod 600 {path}")
    users: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, digest = line.partition(":")
        if not sep or not _NAME.match(name) or not digest.startswith("$argon2"):
            raise AuthError(f"users file {str(path)!r} line {n} is not NAME:$argon2id$...; rewrite it with: "
                            f"qfleet dashboards users add NAME --users-file {path}")
        users[name] = digest
    return users


def hash_password(password: str) -> str:
    """A salted argon2id hash of ``password`` (argon2-cffi's recommended parameters)."""
    from argon2 import PasswordHasher

    return PasswordHasher().hash(password)


def verify(users: Mapping[str, str], name: str, password: str) -> bool:
    """Whether ``password`` is ``name``'s; an unknown name costs one hash check too (no timing oracle)."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    digest = users.get(name)
    try:
        ok = PasswordHasher().verify(digest or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and digest is not None


def add_user(path: Path, name: str, password: str) -> None:
    """Add ``name`` (or replace its password) in the users file ``path``, created mode 0600.

    The new file is written beside the old one (mode 0600 from its creation, never chmod-ed after the fact) and
    renamed over it, so a crash leaves the old file or the new one.

    Raises:
        AuthError: a bad name, an empty password, or a users file that :func:`read_users` refuses.
    """
    if not _NAME.match(name):
        raise AuthError(f"user name {name!r} must be 1-64 characters of letters, digits and ._@+-")
    if not password:
        raise AuthError("the password is empty; type one (it is read from the terminal or stdin, never argv)")
    users = read_users(path) if path.exists() else {}
    users[name] = hash_password(password)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(f"{n}:{d}\n" for n, d in sorted(users.items())).encode(), mode=0o600)


def proxy_identity(headers: Mapping[str, str], header: str) -> str | None:
    """The user name the reverse proxy put in ``header``, or None when it is missing or not a plain name."""
    value = (headers.get(header) or "").strip()
    return value if _NAME.match(value) else None
