"""Kerberos for the HBase Thrift servers: who we are, the service we talk to, and
failures in one line that say what to do.

Who we are (``Login``): with ``[hbase] keytab`` a login of our own, kept in a private
in-memory ticket cache of this process and renewed from the keytab before the ticket
runs out, so a run longer than the ticket lifetime keeps working; without it the
ticket cache ``kinit`` left (``KRB5CCNAME``), read again at every connection, so a
ticket renewed outside (``kinit -R``, k5start) is picked up.

MIT Kerberos is reached through python-gssapi (``pip install 'hbase2es[kerberos]'``); it
reads ``KRB5_CONFIG`` as kinit does. Nothing secret is ever logged: no key, ticket or
token, only principal and file names.
"""

from __future__ import annotations

import importlib
import logging
import os
import struct
import threading
import time

from ..errors import ConfigError, UnavailableError

log = logging.getLogger(__name__)

# Renew a keytab login once half of its ticket's life has passed: connections opened
# afterwards then always get service tickets with at least that much life left.
RENEW_AT_FRACTION = 0.5

# MIT krb5 minor status codes (com_err table "krb5", base -1765328384) as gssapi gives them.
_KRB5 = 2 ** 32 - 1765328384
CLIENT_UNKNOWN = _KRB5 + 6  # KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN
SERVICE_UNKNOWN = _KRB5 + 7  # KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN
PREAUTH_FAILED = _KRB5 + 24  # KRB5KDC_ERR_PREAUTH_FAILED: the keytab's key is not the KDC's
TICKET_EXPIRED = _KRB5 + 32  # KRB5KRB_AP_ERR_TKT_EXPIRED
CLOCK_SKEW = _KRB5 + 37  # KRB5KRB_AP_ERR_SKEW
KDC_UNREACHABLE = _KRB5 + 156  # KRB5_KDC_UNREACH


class AuthError(UnavailableError):
    """Authentication with the HBase Thrift server failed (exit 3); says what to do."""


def gssapi():
    """The python-gssapi module, imported on first use: only Kerberos users need it."""
    try:
        return importlib.import_module("gssapi")
    except ImportError:
        raise ConfigError("[hbase] auth = \"kerberos\" needs the gssapi package: pip install "
                          "'hbase2es[kerberos]' (it builds against MIT Kerberos, e.g. Debian's "
                          "libkrb5-dev)") from None


def keytab_principals(data: bytes) -> list[str]:
    """The principals a keytab file (format 0x0502, or 0x0501) holds keys for, in order."""
    if data[:1] != b"\x05" or data[1:2] not in (b"\x01", b"\x02"):
        raise ValueError("not a Kerberos keytab (it does not start with 0x0501/0x0502)")
    names: list[str] = []
    pos = 2
    while pos + 4 <= len(data):
        (size,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if size < 0:  # a hole left by a deleted entry
            pos += -size
            continue
        entry, pos = data[pos:pos + size], pos + size
        count, at = struct.unpack_from(">H", entry, 0)[0], 2
        if data[1:2] == b"\x01":
            count -= 1  # version 1 counted the realm among the components
        parts = []
        for _ in range(count + 1):
            (length,) = struct.unpack_from(">H", entry, at)
            parts.append(entry[at + 2:at + 2 + length].decode("utf-8", "replace"))
            at += 2 + length
        realm, components = parts[0], parts[1:]
        name = "/".join(components) + "@" + realm
        if name not in names:
            names.append(name)
    return names


def read_keytab_principals(path: str) -> list[str]:
    """The principals of the keytab at ``path`` (ConfigError when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return keytab_principals(f.read())
    except OSError as exc:
        raise ConfigError(f"[hbase] keytab {path!r} cannot be read: "
                          f"{exc.strerror or exc}") from None
    except (ValueError, struct.error) as exc:
        raise ConfigError(f"[hbase] keytab {path!r} is not a Kerberos keytab: {exc}") from None


class Login:
    """The client's Kerberos credentials: a keytab login renewed in time, or the cache."""

    def __init__(self, keytab: str | None, client_principal: str | None):
        self.keytab = keytab
        self.client_principal = client_principal
        self._creds = None
        self._renew_at = 0.0
        self._logins = 0  # each keytab login gets a fresh in-memory cache of its own
        self._lock = threading.Lock()

    @property
    def who(self) -> str:
        """The client as messages name it (never a secret)."""
        if self.keytab:
            return f"{self.client_principal or 'the first principal'} from keytab {self.keytab}"
        cache = os.environ.get("KRB5CCNAME", "the default ticket cache")
        return f"{self.client_principal or 'the ticket'} in {cache}"

    def credentials(self):
        """Credentials good for at least half their life (keytab) or as kinit left them."""
        with self._lock:
            if self.keytab:
                if self._creds is None or time.monotonic() >= self._renew_at:
                    self._creds = self._keytab_login()
                return self._creds
            return self._from_cache()

    def _keytab_login(self):
        gss = gssapi()
        principal = self.client_principal or self._first_principal()
        held = read_keytab_principals(self.keytab)
        if not _in_keytab(principal, held):
            raise AuthError(f"keytab {self.keytab} holds no key for {principal} (it holds "
                            f"{', '.join(held) or 'none'}): set [hbase] client_principal to one "
                            f"of those, or use the keytab made for it")
        self._logins += 1
        store = {"client_keytab": self.keytab,
                 "ccache": f"MEMORY:hbase2es-{os.getpid()}-{id(self)}-{self._logins}"}
        try:
            creds = gss.Credentials(name=gss.Name(principal, gss.NameType.kerberos_principal),
                                    usage="initiate", store=store)
            life = creds.lifetime  # the AS exchange with the KDC happens here
        except gss.exceptions.GSSError as exc:
            raise explain(exc, self, service=None) from None
        self._renew_at = time.monotonic() + max(1.0, life * RENEW_AT_FRACTION)
        if self._logins > 1:
            log.info("Kerberos: renewed the login of %s (ticket valid %ds)", principal, life)
        return creds

    def _first_principal(self) -> str:
        held = read_keytab_principals(self.keytab)
        if not held:
            raise AuthError(f"keytab {self.keytab} holds no keys: set [hbase] keytab to the "
                            f"client's keytab")
        return held[0]

    def _from_cache(self):
        gss = gssapi()
        name = (gss.Name(self.client_principal, gss.NameType.kerberos_principal)
                if self.client_principal else None)
        try:
            creds = gss.Credentials(name=name, usage="initiate")
            life = creds.lifetime
        except gss.exceptions.GSSError as exc:
            raise explain(exc, self, service=None) from None
        if life is not None and life <= 0:
            raise expired(self)
        return creds


def _in_keytab(principal: str, held: list[str]) -> bool:
    """``principal`` (realm optional) is one of the keytab's."""
    return principal in held or any(h.split("@", 1)[0] == principal for h in held)


_logins: dict[tuple, Login] = {}


def login_for(keytab: str | None, client_principal: str | None) -> Login:
    """This process's Login for that keytab and principal (one per process, then reused)."""
    key = (os.getpid(), keytab, client_principal)
    if key not in _logins:
        _logins[key] = Login(keytab, client_principal)
    return _logins[key]


def service_name(principal: str, host: str):
    """The server's name: a primary (``hbase`` -> ``hbase@host``) or a full principal."""
    gss = gssapi()
    if "/" in principal or "@" in principal:
        return gss.Name(principal, gss.NameType.kerberos_principal)
    return gss.Name(f"{principal}@{host}", gss.NameType.hostbased_service)


def shown(service) -> str:
    """A service name as messages show it: ``hbase/host`` for ``hbase@host``."""
    text = str(service)
    if "/" not in text and "@" in text:
        primary, host = text.split("@", 1)
        return f"{primary}/{host}"
    return text


def explain(exc, login: Login, service) -> AuthError:
    """One line for a GSSAPI failure: what went wrong and which setting fixes it."""
    gss = gssapi()
    minor = getattr(exc, "min_code", 0) or 0
    detail = _minor_text(exc)
    if isinstance(exc, gss.exceptions.ExpiredCredentialsError) or minor == TICKET_EXPIRED:
        return expired(login)
    if minor == SERVICE_UNKNOWN and service is not None:
        return AuthError(f"the KDC does not know the service principal {shown(service)} "
                         f"({detail}): set [hbase] principal to the server's (HBase's "
                         f"hbase.thrift.kerberos.principal, or hbase.thrift.spnego.principal "
                         f"over HTTP) and [hbase] host to the name in it")
    if minor == CLIENT_UNKNOWN:
        return AuthError(f"the KDC does not know the client {login.who} ({detail}): set "
                         f"[hbase] client_principal to a principal of your realm")
    if minor == PREAUTH_FAILED:
        return AuthError(f"the KDC refused the key of {login.who} ({detail}): the keytab is "
                         f"out of date; export it again (ktadd/ipa-getkeytab)")
    if minor == KDC_UNREACHABLE:
        return AuthError(f"cannot reach the KDC ({detail}): check the realm's kdc in "
                         f"krb5.conf (KRB5_CONFIG={os.environ.get('KRB5_CONFIG', '/etc/krb5.conf')})")
    if minor == CLOCK_SKEW:
        return AuthError(f"this machine's clock differs too much from the KDC's ({detail}): "
                         f"synchronise it (NTP)")
    if isinstance(exc, gss.exceptions.MissingCredentialsError) and not login.keytab:
        return AuthError(f"no Kerberos ticket ({login.who}: {detail}): run kinit, or set "
                         f"[hbase] keytab (and client_principal) in the config")
    target = f" for {shown(service)}" if service is not None else ""
    return AuthError(f"Kerberos login of {login.who}{target} failed: {detail}")


def expired(login: Login) -> AuthError:
    fix = ("run kinit again, or set [hbase] keytab so that hbase2es renews its own ticket"
           if not login.keytab else "check the KDC's clock and the principal's max life")
    return AuthError(f"the Kerberos ticket of {login.who} has expired: {fix}")


def _minor_text(exc) -> str:
    """The krb5 part of a GSSAPI error, the part people can act on."""
    try:
        text = exc.gen_message()
    except Exception:  # noqa: BLE001 - an undecodable status still deserves a message
        text = str(exc)
    minor = text.rsplit("Minor (", 1)
    if len(minor) == 2 and "): " in minor[1]:
        text = minor[1].split("): ", 1)[1]
    return " ".join(text.split())[:200]
