"""Who may do what: operator, auditor and guild API keys, sign-in challenges, one-time login links, sessions.

Every secret is random (``secrets.token_urlsafe``), shown once, and stored only as its SHA-256. An API key
reads ``eck_<id>_<secret>``: the id is public and finds the row; the hash of the whole key is compared in
constant time. A contributor signs in either by signing a fresh challenge with the Ed25519 key of the
``did:key`` their verified credential names, or with a one-time login link an operator made for them;
either gives a session token that sees only that person's own data. Challenges and links work once.
A guild key speaks for one issuer on the operator's trust list and sees only that guild's aggregates.
Every change here (a key made or revoked, a link made or used, a session opened or closed) is audited.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, delete, func, select, update

from endcredits.errors import ConflictError, CredentialError, NotFoundError, ValidationError
from endcredits.registry.identity.multibase import did_key_public_key
from endcredits.registry.identity.trusted import check_trusted
from endcredits.registry.records import clean_text, get_person
from endcredits.store.audit import append_audit
from endcredits.store.engine import format_time, parse_time
from endcredits.store.schema import api_keys, auth_challenges, credentials, login_links, sessions

SCOPES: tuple[str, ...] = ("ingest", "registry", "payouts", "read")
"""What an operator key may do: ingest usage and attribute; manage people, works, credits, consent and
login links; make payout batches, apply statuses and claim escrow for a person; read everything."""

ROLES: tuple[str, ...] = ("operator", "auditor", "guild")
"""An operator key has scopes; an auditor key reads everything; a guild key names one trusted issuer and
sees only that guild's aggregates and its members' unclaimed lines (no scope)."""

KEY_PREFIX = "eck_"
SESSION_PREFIX = "ecs_"
LINK_PREFIX = "ecl_"
SECRET_BYTES = 32
TOKEN_LENGTH_MAX = 128

CHALLENGE_TTL_S = 300
LOGIN_LINK_TTL_S_DEFAULT = 86_400
LOGIN_LINK_TTL_S_MAX = 30 * 86_400
SESSION_TTL_S = 12 * 3_600
CHALLENGES_STORED_MAX = 100_000
"""Challenges kept at once, for everyone together: past it, new ones wait until old ones expire. Each
client address is held to ``CHALLENGES_PER_CLIENT_BURST`` first (``service/throttle.py``), so filling the
table takes thousands of addresses, and no one client can lock a person out."""
EXPIRED_CHALLENGES_SWEPT_MAX = 1_000
"""Expired challenges removed before each new one is issued: more than one, so the table shrinks."""
CHALLENGES_PER_CLIENT_BURST = 20
"""Challenges one client address may ask for at once ..."""
CHALLENGE_CLIENT_REFILL_S = 15
"""... and then one more every this many seconds."""
CLIENTS_REMEMBERED_MAX = 10_000
"""Client addresses whose challenge budget is remembered; the least recently seen is forgotten first."""

SIGN_IN_DOMAIN = "endcredits sign-in v1"


def challenge_message(challenge_id: str, nonce: str) -> bytes:
    """The exact bytes a contributor signs: a fixed domain, the challenge id and its nonce, one per line,
    so a signature made here means nothing anywhere else."""
    return f"{SIGN_IN_DOMAIN}\n{challenge_id}\n{nonce}".encode()


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _at(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Principal:
    """Who is asking: ``public`` (no credentials), ``operator`` (with scopes), ``auditor`` (reads),
    ``guild`` (one trusted issuer's aggregates), or ``contributor`` (one person, through a session)."""

    kind: str
    scopes: frozenset[str] = frozenset()
    person_id: int | None = None
    subject: str = "public"  # "key:ID" or "session:HASH-PREFIX", for the audit log
    issuer: str | None = None  # a guild key's issuer

    def can(self, scope: str) -> bool:
        if self.kind == "operator":
            return scope in self.scopes
        return self.kind == "auditor" and scope == "read"


PUBLIC = Principal("public")


class AuthError(Exception):
    """Credentials that are missing, unknown, forged, expired or revoked (401), that do not allow what
    was asked (403), or a client asking too often (429, ``retry_after_s``). Kept apart from
    ``EndcreditsError``: it is about the request, not the data."""

    def __init__(self, status: int, code: str, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after_s = retry_after_s


# API keys ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewKey:
    id: str
    key: str  # shown once
    role: str
    scopes: tuple[str, ...]
    issuer: str | None = None  # a guild key's issuer


def _guild_key_issuer(conn: Connection, role: str, scopes: list[str], issuer: str | None) -> str | None:
    """The issuer a key speaks for: a guild key's, which the operator must trust; none for other roles."""
    if role != "guild":
        if issuer is not None:
            raise ValidationError("--issuer is for a guild key (--role guild): an operator or auditor key has none")
        return None
    if issuer is None:
        raise ValidationError("a guild key speaks for one trusted issuer: give --issuer ID")
    if scopes:
        raise ValidationError("a guild key sees its own members' aggregates only: give no --scope")
    return check_trusted(conn, issuer)


def create_api_key(
    conn: Connection,
    *,
    role: str,
    scopes: list[str],
    label: str,
    issuer: str | None = None,
    now: dt.datetime | None = None,
) -> NewKey:
    """Make a key for ``role`` (see ``ROLES``) and return it, shown once; a guild key names its ``issuer``,
    which must be on the operator's trust list (``untrusted_issuer`` otherwise)."""
    if role not in ROLES:
        raise ValidationError(f"role {role!r} must be one of {', '.join(ROLES)}")
    if _guild_key_issuer(conn, role, scopes, issuer) is not None:
        return _insert_key(conn, role, [], label, issuer, now)
    wanted = sorted(set(scopes), key=SCOPES.index) if all(s in SCOPES for s in scopes) else None
    if wanted is None:
        bad = next(s for s in scopes if s not in SCOPES)
        raise ValidationError(f"scope {bad!r} must be one of {', '.join(SCOPES)}")
    if role == "auditor":
        if wanted and wanted != ["read"]:
            raise ValidationError("an auditor key reads everything and changes nothing: give no scope, or only read")
        wanted = ["read"]
    elif not wanted:
        raise ValidationError(f"an operator key needs at least one --scope of {', '.join(SCOPES)}")
    return _insert_key(conn, role, wanted, label, None, now)


def _insert_key(
    conn: Connection, role: str, wanted: list[str], label: str, issuer: str | None, now: dt.datetime | None
) -> NewKey:
    label = clean_text(label, "key label")
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    when = format_time(_at(now))
    conn.execute(
        api_keys.insert().values(
            id=key_id,
            secret_sha256=sha256_hex(key),
            role=role,
            scopes=",".join(wanted),
            label=label,
            created_at=when,
            issuer=issuer,
        )
    )
    payload: dict[str, Any] = {"role": role, "scopes": wanted, "label": label}
    if issuer is not None:
        payload["issuer"] = issuer
    append_audit(conn, "auth.key_created", f"key:{key_id}", payload, at=when)
    return NewKey(key_id, key, role, tuple(wanted), issuer)


def revoke_api_key(conn: Connection, key_id: str, *, now: dt.datetime | None = None) -> None:
    row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    if row is None:
        raise NotFoundError(f"no API key {key_id!r}: list them with `endcredits operator-key list`")
    if row.revoked_at is not None:
        raise ConflictError(f"API key {key_id} was already revoked at {row.revoked_at}")
    when = format_time(_at(now))
    conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=when))
    append_audit(conn, "auth.key_revoked", f"key:{key_id}", {"role": row.role}, at=when)


def _scopes(stored: str) -> list[str]:
    """The scopes stored as ``a,b`` (a guild key's: none)."""
    return stored.split(",") if stored else []


def list_api_keys(conn: Connection) -> list[dict[str, object]]:
    rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)).all()
    return [
        {
            "id": r.id,
            "role": r.role,
            "scopes": _scopes(r.scopes),
            "issuer": r.issuer,
            "label": r.label,
            "created_at": r.created_at,
            "revoked_at": r.revoked_at,
        }
        for r in rows
    ]


def _issuer_still_trusted(conn: Connection, row: Any) -> bool:
    """False for a guild key whose issuer the operator has since removed from its trust list: the key then
    speaks for nobody."""
    if row.issuer is None:
        return True
    try:
        check_trusted(conn, row.issuer)
    except CredentialError:
        return False
    return True


def _key_principal(conn: Connection, token: str) -> Principal:
    key_id = token[len(KEY_PREFIX) :].split("_", 1)[0]
    row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    # The hash is compared even for an unknown id, so timing does not tell ids apart.
    stored = row.secret_sha256 if row is not None else "0" * 64
    if not hmac.compare_digest(stored, sha256_hex(token)) or row is None:
        raise AuthError(
            401, "unauthorized", "unknown API key: check the key, or make one with `endcredits operator-key create`"
        )
    if row.revoked_at is not None:
        raise AuthError(401, "unauthorized", f"API key {key_id} was revoked at {row.revoked_at}: make a new one")
    if not _issuer_still_trusted(conn, row):
        raise AuthError(401, "unauthorized", f"guild key {key_id}: the operator no longer trusts {row.issuer}")
    return Principal(row.role, frozenset(_scopes(row.scopes)), None, f"key:{key_id}", row.issuer)


def key_principal(conn: Connection, key_id: str) -> Principal | None:
    """The principal of the API key ``key_id`` when it exists and is not revoked (the portal's operator
    cookie names the key, not its secret)."""
    row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    if row is None or row.revoked_at is not None or not _issuer_still_trusted(conn, row):
        return None
    return Principal(row.role, frozenset(_scopes(row.scopes)), None, f"key:{key_id}", row.issuer)


# Sessions ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewSession:
    token: str  # shown once
    person_id: int
    expires_at: str


def _open_session(conn: Connection, person_id: int, via: str, when: dt.datetime) -> NewSession:
    token = SESSION_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    digest = sha256_hex(token)
    expires = format_time(when + dt.timedelta(seconds=SESSION_TTL_S))
    conn.execute(
        sessions.insert().values(
            token_sha256=digest, person_id=person_id, via=via, expires_at=expires, created_at=format_time(when)
        )
    )
    append_audit(
        conn,
        "auth.session_opened",
        f"person:{person_id}",
        {"via": via, "session": digest[:16], "expires_at": expires},
        at=format_time(when),
    )
    return NewSession(token, person_id, expires)


def _session_principal(conn: Connection, token: str, now: dt.datetime) -> Principal:
    digest = sha256_hex(token)
    row = conn.execute(select(sessions).where(sessions.c.token_sha256 == digest)).first()
    if row is None:
        raise AuthError(401, "unauthorized", "unknown session token: sign in again")
    if row.revoked_at is not None:
        raise AuthError(401, "unauthorized", "this session was signed out: sign in again")
    if parse_time(row.expires_at) <= now:
        raise AuthError(401, "unauthorized", f"this session expired at {row.expires_at}: sign in again")
    return Principal("contributor", frozenset(), int(row.person_id), f"session:{digest[:16]}")


def close_session(conn: Connection, token: str, *, now: dt.datetime | None = None) -> None:
    digest = sha256_hex(token)
    when = format_time(_at(now))
    row = conn.execute(select(sessions).where(sessions.c.token_sha256 == digest)).first()
    if row is None or row.revoked_at is not None:
        return
    conn.execute(update(sessions).where(sessions.c.token_sha256 == digest).values(revoked_at=when))
    append_audit(conn, "auth.session_closed", f"person:{row.person_id}", {"session": digest[:16]}, at=when)


def principal_for(conn: Connection, authorization: str | None, *, now: dt.datetime | None = None) -> Principal:
    """The principal behind an ``Authorization: Bearer TOKEN`` header (none: the public)."""
    if authorization is None or not authorization.strip():
        return PUBLIC
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError(401, "unauthorized", "send credentials as 'Authorization: Bearer TOKEN'")
    if len(token) > TOKEN_LENGTH_MAX or not token.isascii():
        raise AuthError(401, "unauthorized", "malformed token")
    if token.startswith(KEY_PREFIX):
        return _key_principal(conn, token)
    if token.startswith(SESSION_PREFIX):
        return _session_principal(conn, token, _at(now))
    raise AuthError(401, "unauthorized", "unknown token kind: an API key starts with eck_, a session with ecs_")


# Signed challenges -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Challenge:
    id: str
    person_id: int
    nonce: str
    message: str  # what to sign (UTF-8)
    expires_at: str


NOT_SIGNED_IN = (
    "this challenge, did:key and signature sign no one in: ask for a new challenge and sign it with the key "
    "of the did:key your credential names (within five minutes), or ask the operator for a login link"
)
"""The one answer to every failed signed-challenge sign-in, whatever the reason: an unknown, expired or
used challenge, a person who does not exist or holds no did:key, another key, a bad signature."""


def issue_challenge(conn: Connection, person_id: int, *, now: dt.datetime | None = None) -> Challenge:
    """A fresh nonce for ``person_id`` to sign, valid ``CHALLENGE_TTL_S``.

    Every person id gets the same answer, so it tells nobody who exists or who holds a did:key; the
    challenge is kept only for a person with a valid credential naming a ``did:key`` (any other can never
    be used). Expired challenges are removed first (at most ``EXPIRED_CHALLENGES_SWEPT_MAX``), and past
    ``CHALLENGES_STORED_MAX`` kept ones the answer is 429. Nothing is audited: the caller is anonymous.
    """
    when = _at(now)
    stamp = format_time(when)
    doomed = (
        select(auth_challenges.c.id)
        .where(auth_challenges.c.expires_at <= stamp)
        .limit(EXPIRED_CHALLENGES_SWEPT_MAX)
        .scalar_subquery()
    )
    conn.execute(delete(auth_challenges).where(auth_challenges.c.id.in_(doomed)))
    stored = conn.execute(select(func.count()).select_from(auth_challenges)).scalar_one()
    if stored >= CHALLENGES_STORED_MAX:
        raise AuthError(
            429,
            "rate_limited",
            f"too many sign-in challenges are open at once: try again in {CHALLENGE_TTL_S} s",
            retry_after_s=CHALLENGE_TTL_S,
        )
    cid, nonce = secrets.token_hex(16), secrets.token_urlsafe(SECRET_BYTES)
    expires = format_time(when + dt.timedelta(seconds=CHALLENGE_TTL_S))
    if _did_keys(conn, person_id):
        conn.execute(
            auth_challenges.insert().values(
                id=cid, person_id=person_id, nonce=nonce, expires_at=expires, created_at=stamp
            )
        )
    return Challenge(cid, person_id, nonce, challenge_message(cid, nonce).decode(), expires)


def _did_keys(conn: Connection, person_id: int) -> list[str]:
    rows = conn.execute(
        select(credentials.c.subject).where(credentials.c.person_id == person_id, credentials.c.invalid_at.is_(None))
    ).all()
    return sorted({r.subject for r in rows if r.subject.startswith("did:key:")})


def _signed_by(did: str, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(did_key_public_key(did)).verify(signature, message)
    except (InvalidSignature, ValueError, ValidationError):
        return False
    return True


def sign_in_with_challenge(
    conn: Connection, challenge_id: str, did: str, signature: bytes, *, now: dt.datetime | None = None
) -> NewSession:
    """Check the signature over ``challenge_message`` with the key inside ``did``, which must be the subject
    of one of the person's valid credentials; remove the challenge (it works once); open a session.

    Every check runs whatever the others found, and any failure is ``NOT_SIGNED_IN``, so neither the
    answer nor much of its timing tells a kept challenge from one that was never kept."""
    when = _at(now)
    row = conn.execute(select(auth_challenges).where(auth_challenges.c.id == challenge_id)).first()
    person_id = int(row.person_id) if row is not None else 0
    live = row is not None and parse_time(row.expires_at) > when
    holds = did in _did_keys(conn, person_id)
    signed = _signed_by(did, signature, challenge_message(challenge_id, row.nonce if row is not None else ""))
    if not (live and holds and signed):
        raise AuthError(401, "unauthorized", NOT_SIGNED_IN)
    done = conn.execute(delete(auth_challenges).where(auth_challenges.c.id == challenge_id))
    if done.rowcount != 1:  # pragma: no cover - writers are serialized; kept as the one-use guarantee
        raise AuthError(401, "unauthorized", NOT_SIGNED_IN)
    stamp = format_time(when)
    append_audit(conn, "auth.challenge_used", f"person:{person_id}", {"challenge": challenge_id, "did": did}, at=stamp)
    return _open_session(conn, person_id, "challenge", when)


def _one_use(row: Any, what: str, now: dt.datetime) -> Any:
    """A login-link row that may still be used once, or 401 saying why not."""
    if row is None:
        raise AuthError(401, "unauthorized", f"unknown {what.removeprefix('this ')}: ask for a new one")
    if row.used_at is not None:
        raise AuthError(401, "unauthorized", f"{what} was already used at {row.used_at}: ask for a new one")
    if parse_time(row.expires_at) <= now:
        raise AuthError(401, "unauthorized", f"{what} expired at {row.expires_at}: ask for a new one")
    return row


# Login links -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewLoginLink:
    token: str  # shown once
    person_id: int
    expires_at: str


def create_login_link(
    conn: Connection,
    person_id: int,
    *,
    created_by: str,
    ttl_s: int = LOGIN_LINK_TTL_S_DEFAULT,
    now: dt.datetime | None = None,
) -> NewLoginLink:
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 60 <= ttl_s <= LOGIN_LINK_TTL_S_MAX:
        raise ValidationError(f"login link lifetime must be 60..{LOGIN_LINK_TTL_S_MAX} seconds, got {ttl_s!r}")
    get_person(conn, person_id)
    when = _at(now)
    token = LINK_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    expires = format_time(when + dt.timedelta(seconds=ttl_s))
    digest = sha256_hex(token)
    conn.execute(
        login_links.insert().values(
            token_sha256=digest,
            person_id=person_id,
            created_by=created_by[:32],
            expires_at=expires,
            created_at=format_time(when),
        )
    )
    append_audit(
        conn,
        "auth.login_link_created",
        f"person:{person_id}",
        {"link": digest[:16], "by": created_by, "expires_at": expires},
        at=format_time(when),
    )
    return NewLoginLink(token, person_id, expires)


def sign_in_with_link(conn: Connection, token: str, *, now: dt.datetime | None = None) -> NewSession:
    when = _at(now)
    if not token.startswith(LINK_PREFIX) or len(token) > TOKEN_LENGTH_MAX:
        raise AuthError(401, "unauthorized", "malformed login link token")
    digest = sha256_hex(token)
    row = _one_use(
        conn.execute(select(login_links).where(login_links.c.token_sha256 == digest)).first(), "this login link", when
    )
    stamp = format_time(when)
    conn.execute(update(login_links).where(login_links.c.token_sha256 == digest).values(used_at=stamp))
    append_audit(conn, "auth.login_link_used", f"person:{row.person_id}", {"link": digest[:16]}, at=stamp)
    return _open_session(conn, int(row.person_id), "link", when)
