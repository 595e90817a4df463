"""Test material made here, offline: tiny PNG images, a local C2PA certificate authority, registered works."""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import func, select

from endcredits.interop._common import Window
from endcredits.interop.c2pa_manifests import SigningKey
from endcredits.registry.records import WorkIn, add_works
from endcredits.store.engine import Store
from endcredits.store.schema import metadata

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
WINDOW = Window.days(T0, 365)


def png(seed: int, size: int = 8) -> bytes:
    """A valid RGB PNG of ``size`` x ``size`` pixels whose pixels depend on ``seed``."""
    rows = b"".join(b"\x00" + bytes((x * 7 + y * 13 + seed * 31) % 256 for x in range(size * 3)) for y in range(size))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class LocalCA:
    root_pem: bytes
    root_key: ec.EllipticCurvePrivateKey
    root_name: x509.Name

    def leaf(self, common_name: str, organization: str) -> tuple[bytes, bytes]:
        """(certificate chain PEM, private key PEM) of an ES256 signing certificate this CA issued."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            ]
        )
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(self.root_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(sign=True, ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()), critical=False
            )
            .sign(self.root_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return _pem(cert) + self.root_pem, key_pem

    def signing_key(self) -> SigningKey:
        chain, key = self.leaf("endcredits test signer", "endcredits tests")
        return SigningKey(chain, key, "es256")


def make_ca(name: str = "endcredits test root") -> LocalCA:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "endcredits tests"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=60))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return LocalCA(_pem(cert), key, subject)


def register(store: Store, content: bytes, title: str, kind: str = "image", source: str | None = None) -> str:
    with store.write() as conn:
        return add_works(conn, [WorkIn(content=content, title=title, kind=kind, source=source)])[0]


def row_counts(store: Store) -> dict[str, int]:
    """Rows in every table: equal before and after means nothing was written."""
    with store.read() as conn:
        return {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in metadata.sorted_tables
        }


def work_grants(store: Store, work_id: str) -> dict[str, tuple[str, str]]:
    """use -> (decision, source) of the work's grants (the last stored wins)."""
    from endcredits.consent.records import grants_for

    with store.read() as conn:
        return {g.use: (g.decision, g.source) for _, g in grants_for(conn, [work_id], [])}


def work_credits(store: Store, work_id: str) -> set[tuple[str, str]]:
    """(credited name, role) on a work."""
    from endcredits.store.schema import credits, names, works

    with store.read() as conn:
        q = (
            select(names.c.name, credits.c.role_scheme, credits.c.role_code)
            .join(names, names.c.id == credits.c.name_id)
            .join(works, works.c.seq == credits.c.work_seq)
            .where(works.c.id == work_id)
        )
        return {(r.name, f"{r.role_scheme}:{r.role_code}") for r in conn.execute(q)}


def parents_of(store: Store, work_id: str) -> set[str]:
    from endcredits.store.schema import lineage

    with store.read() as conn:
        return {
            r.parent_work_id for r in conn.execute(select(lineage.c.parent_work_id).where(lineage.c.work_id == work_id))
        }


def sign_raw(
    definition: dict[str, object],
    asset: bytes,
    key: SigningKey,
    *,
    ingredients: tuple[tuple[dict[str, object], bytes], ...] = (),
) -> bytes:
    """Sign a manifest definition written by hand (as another tool would) onto a PNG."""
    import io

    import c2pa

    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, key.cert_chain_pem, key.private_key_pem, None)
    )
    builder = c2pa.Builder(definition)
    if any(i.get("relationship") == "parentOf" for i, _ in ingredients):
        builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
    else:
        builder.set_intent(c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.DIGITAL_CREATION)
    for ingredient, data in ingredients:
        builder.add_ingredient(ingredient, "image/png", io.BytesIO(data))
    out = io.BytesIO()
    builder.sign(signer, "image/png", io.BytesIO(asset), out)
    return out.getvalue()
