"""Identity: verified humans by W3C Verifiable Credentials (``eddsa-jcs-2022``), issuers' keys and
status lists, and the ORCID / ISNI / IPI identifiers a person may carry."""

from endcredits.registry.identity.credential import VerifiedCredential, verify_credential
from endcredits.registry.identity.identifiers import validate_ipi, validate_isni, validate_orcid
from endcredits.registry.identity.persons import attach_credential, refresh_verification
from endcredits.registry.identity.statuslist import load_status_lists
from endcredits.registry.identity.trust import TrustList, load_trust

__all__ = [
    "TrustList",
    "VerifiedCredential",
    "attach_credential",
    "load_status_lists",
    "load_trust",
    "refresh_verification",
    "validate_ipi",
    "validate_isni",
    "validate_orcid",
    "verify_credential",
]
