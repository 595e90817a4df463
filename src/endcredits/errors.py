"""One exception tree for everything endcredits raises on purpose.

    EndcreditsError                 base; every error has a stable ``code``
    ├── ValidationError             bad input: a malformed amount, a missing column, an unknown currency
    ├── NotFoundError               an id that names nothing
    ├── ConflictError               an idempotency id reused with other content; a duplicate
    ├── ConsentError                a use that consent forbids
    ├── ManifestError               a manifest or artifact that does not match what was recorded
    ├── LedgerError                 an unbalanced transfer, an overdraft, a broken ledger invariant
    ├── LimitExceededError          a value or a batch beyond a bound in ``endcredits.limits``
    ├── BusyError                   a bounded queue is full (the usage intake): try again later
    ├── StoreError                  the database is not ours, or is at an unknown schema version
    ├── EvidenceError               an evidence file is unreadable, truncated or does not match the ledger
    ├── CredentialError             a credential that is malformed, forged, expired, revoked or untrusted
    └── InvariantError              a programmer error caught by ``invariant()``; never expected

The CLI turns any of these into one line on stderr and exit status 1; the API into its ``code``.
"""

from __future__ import annotations


class EndcreditsError(Exception):
    """Base of every error endcredits raises on purpose."""

    code: str = "error"

    def __init__(self, message: str) -> None:
        # One line: the CLI prints exactly this.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self)


class ValidationError(EndcreditsError, ValueError):
    code = "validation"


class NotFoundError(EndcreditsError, LookupError):
    code = "not_found"


class ConflictError(EndcreditsError):
    code = "conflict"


class ConsentError(EndcreditsError):
    code = "consent"


class ManifestError(EndcreditsError):
    code = "manifest_mismatch"


class LedgerError(EndcreditsError):
    code = "ledger"


class LimitExceededError(EndcreditsError, ValueError):
    code = "limit_exceeded"


class BusyError(EndcreditsError):
    """A bounded queue is full: nothing was written; try again after ``retry_after_s`` seconds."""

    code = "busy"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreError(EndcreditsError):
    code = "store"


class EvidenceError(EndcreditsError):
    code = "evidence"


class CredentialError(EndcreditsError):
    """A credential that does not prove what it claims. ``reason`` is one stable word, also the message's
    first: malformed, unsupported, signature, untrusted_issuer, not_yet_valid, expired, revoked,
    suspended, status_unknown."""

    code = "credential"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class InvariantError(EndcreditsError, AssertionError):
    code = "invariant"


def invariant(condition: bool, message: str) -> None:
    """Raise ``InvariantError`` when ``condition`` is false. Unlike ``assert``, it survives ``python -O``."""
    if not condition:
        raise InvariantError(message)


__all__ = [
    "ConflictError",
    "ConsentError",
    "CredentialError",
    "EndcreditsError",
    "EvidenceError",
    "InvariantError",
    "LedgerError",
    "LimitExceededError",
    "ManifestError",
    "NotFoundError",
    "StoreError",
    "ValidationError",
    "invariant",
]
