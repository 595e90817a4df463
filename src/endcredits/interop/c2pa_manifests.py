"""C2PA manifests in and out, through ``c2pa-python`` (the Content Authenticity Initiative's SDK), so
that what creators already sign into their assets becomes works, credits, lineage and consent.

Reading (``import_c2pa``): the asset's manifest store must validate (and, given trust anchors, chain to
one); anything else is refused in one line with nothing imported. The active manifest describes one
work. Its training-and-data-mining assertions become the work's grants (``constrained`` counts as
notAllowed, as CAWG says), its schema.org CreativeWork authors and contributors and its CAWG identity
assertion's named actor become credited names, and ``parentOf`` / ``componentOf`` ingredients naming a
registered work become lineage, read down the chain.

Writing (``sign_work``): embeds a signed manifest in the registered work's asset, with the work's id,
its grants in force and its credits. No time-stamp authority is contacted (offline).

See docs/concepts/imports.md, "C2PA (`c2pa-python`)" (the mapping table, signing).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import io
import json
import mimetypes
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import c2pa
from sqlalchemy import Connection

from endcredits.consent.records import grants_for
from endcredits.consent.rules import Grant
from endcredits.errors import LimitExceededError, ManifestError, ValidationError
from endcredits.interop._common import (
    IMPORT_FILE_BYTES_MAX,
    TDM_USES,
    CreditName,
    ImportReport,
    LineageIn,
    Plan,
    Window,
    apply_plan,
    clip,
    grants_for_decisions,
    read_bounded,
)
from endcredits.limits import LINEAGE_DEPTH_MAX
from endcredits.registry.records import WorkIn, content_sha256, credited_on, get_work, parse_role, work_exists
from endcredits.registry.roles import check_role
from endcredits.store.engine import Store

TRAINING_MINING_LABELS = ("cawg.training-mining", "c2pa.training-mining")
CREATIVE_WORK_LABEL = "stds.schema-org.CreativeWork"
IDENTITY_LABEL = "cawg.identity"
WORK_LABEL = "org.endcredits.work"
"""Our own assertion: which registered work (by SHA-256) a manifest describes."""

LINEAGE_RELATIONSHIPS = ("parentOf", "componentOf")
SIGNING_ALGORITHMS = {
    "es256": c2pa.C2paSigningAlg.ES256,
    "es384": c2pa.C2paSigningAlg.ES384,
    "es512": c2pa.C2paSigningAlg.ES512,
    "ps256": c2pa.C2paSigningAlg.PS256,
    "ed25519": c2pa.C2paSigningAlg.ED25519,
}
NAMES_PER_MANIFEST_MAX = 1_000
_SHA256 = re.compile(r"[0-9a-f]{64}")
_LABEL_SUFFIX = re.compile(r"(\.v[0-9]+)?(__[0-9]+)?$")


def _base_label(label: str) -> str:
    """``cawg.training-mining__1`` -> ``cawg.training-mining`` (the SDK numbers repeated assertions)."""
    return _LABEL_SUFFIX.sub("", label)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# Reading -------------------------------------------------------------------------------------------
def _context(trust_anchors_pem: str | None) -> c2pa.Context | None:
    if trust_anchors_pem is None:
        return None
    if "-----BEGIN CERTIFICATE-----" not in trust_anchors_pem:
        raise ValidationError("trust anchors must be PEM certificates (-----BEGIN CERTIFICATE-----)")
    return c2pa.Context.from_dict({"trust": {"trust_anchors": trust_anchors_pem}, "verify": {"verify_trust": True}})


def read_manifest_store(
    data: bytes, *, name: str, mime: str | None = None, trust_anchors_pem: str | None = None
) -> dict[str, Any]:
    """The validated manifest store of an asset, as the SDK reports it (``active_manifest``,
    ``manifests``). Refuses an asset without a manifest, one whose manifest does not validate, and, given
    trust anchors, one whose signer does not chain to them."""
    context = _context(trust_anchors_pem)
    fmt = mime or mimetypes.guess_type(name)[0]
    try:
        if context is None:
            reader = c2pa.Reader(fmt, io.BytesIO(data))
        else:
            reader = c2pa.Reader(fmt, io.BytesIO(data), None, context)
    except c2pa.C2paError.ManifestNotFound:
        raise ValidationError(f"{name} carries no C2PA manifest") from None
    except c2pa.C2paError as exc:
        raise ManifestError(f"{name}: the C2PA manifest cannot be read: {_first_line(exc)}") from None
    with reader:
        state = reader.get_validation_state()
        results = reader.get_validation_results() or {}
        store_json = json.loads(reader.json())
    failures = [
        f
        for f in results.get("activeManifest", {}).get("failure", [])
        if f.get("code") != "signingCredential.untrusted" or context is not None
    ]
    if state == "Invalid" or (state not in ("Valid", "Trusted")):
        detail = "; ".join(f"{f.get('code')}: {f.get('explanation')}" for f in failures[:3]) or f"state {state}"
        hint = (
            " (the asset's bytes do not match the hash its manifest signed: it was altered after signing)"
            if any(f.get("code") == "assertion.dataHash.mismatch" for f in failures)
            else ""
        )
        raise ManifestError(f"{name}: the C2PA manifest does not validate{hint}: {detail}")
    if context is not None and state != "Trusted":
        codes = ", ".join(sorted({str(f.get("code")) for f in failures})) or "no trusted signer"
        raise ManifestError(f"{name}: the C2PA manifest's signer is not trusted by the given anchors ({codes})")
    if (
        not isinstance(store_json.get("manifests"), dict)
        or store_json.get("active_manifest") not in store_json["manifests"]
    ):
        raise ManifestError(f"{name}: the C2PA manifest store has no active manifest")
    return dict(store_json)


def _assertions(manifest: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for assertion in manifest.get("assertions", []) or []:
        if isinstance(assertion, dict) and isinstance(assertion.get("label"), str):
            yield _base_label(assertion["label"]), assertion.get("data")


def declared_work(manifest: Mapping[str, Any]) -> str | None:
    """The SHA-256 in the manifest's ``org.endcredits.work`` assertion, if any."""
    for label, data in _assertions(manifest):
        if label == WORK_LABEL and isinstance(data, dict) and isinstance(data.get("sha256"), str):
            value = data["sha256"].lower()
            if _SHA256.fullmatch(value):
                return str(value)
    return None


def training_mining_decisions(manifest: Mapping[str, Any], notes: list[str]) -> dict[str, str]:
    """Use -> decision from the training-and-data-mining assertions (CAWG and legacy C2PA labels)."""
    decisions: dict[str, str] = {}
    for label, data in _assertions(manifest):
        if label not in TRAINING_MINING_LABELS:
            continue
        entries = data.get("entries") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            notes.append(f"{label} in {manifest.get('label')} has no entries")
            continue
        for key, entry in sorted(entries.items()):
            prefix, _, use = str(key).partition(".")
            if prefix not in ("cawg", "c2pa") or use not in TDM_USES:
                notes.append(f"{label} entry {clip(str(key))} is not one of the four uses; ignored")
                continue
            value = entry.get("use") if isinstance(entry, dict) else None
            decision = "allowed" if value == "allowed" else "notAllowed"
            if value not in ("allowed", "notAllowed"):
                notes.append(f"{label} {key}: use {clip(str(value))} counts as notAllowed")
            if decisions.get(use) != "notAllowed":  # two assertions disagreeing: the restrictive one wins
                decisions[use] = decision
    return decisions


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _person_name(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"].strip():
        return str(value["name"]).strip()
    return None


def _verified_identity_names(value: Any, depth: int = 0) -> Iterator[str]:
    if depth > 8:
        return
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "verifiedIdentities":
                for identity in _as_list(inner):
                    if isinstance(identity, dict):
                        name = identity.get("name") or identity.get("username")
                        if isinstance(name, str) and name.strip():
                            yield name.strip()
            else:
                yield from _verified_identity_names(inner, depth + 1)
    elif isinstance(value, list):
        for inner in value:
            yield from _verified_identity_names(inner, depth + 1)


def _known_role(stated: str, fallback: str, what: str, notes: list[str]) -> str:
    """``stated`` when it is a role endcredits knows (as `add_credits` takes it), else ``fallback`` with a note: a role
    outside the known schemes must not fail the whole import, and is never silently dropped."""
    try:
        scheme, code = check_role(*parse_role(stated))
    except ValidationError as exc:
        notes.append(f"{what} is not a role endcredits knows ({exc}); credited as {fallback}")
        return fallback
    return f"{scheme}:{code}"


def credited_names(manifest: Mapping[str, Any], notes: list[str]) -> list[tuple[str, str]]:  # noqa: C901 - one pass over many independent checks
    """(name, role) pairs from schema.org CreativeWork and CAWG identity assertions."""
    found: list[tuple[str, str]] = []
    for label, data in _assertions(manifest):
        if not isinstance(data, dict):
            continue
        if label == CREATIVE_WORK_LABEL:
            for author in _as_list(data.get("author")):
                name = _person_name(author)
                if name:
                    found.append((name, "endcredits:author"))
            for contributor in _as_list(data.get("contributor")):
                role = "endcredits:contributor"
                if isinstance(contributor, dict) and contributor.get("@type") == "Role":
                    stated = contributor.get("roleName")
                    if isinstance(stated, str):
                        role = _known_role(stated, role, f"roleName {clip(stated)}", notes)
                    contributor = contributor.get("contributor")
                for person in _as_list(contributor):
                    name = _person_name(person)
                    if name:
                        found.append((name, role))
        elif label == IDENTITY_LABEL:
            payload = data.get("signer_payload")
            payload = payload if isinstance(payload, dict) else {}
            roles = [r for r in _as_list(payload.get("role")) if isinstance(r, str)]
            codes = [f"cawg:{r.removeprefix('cawg.').lower()}" for r in roles] or ["endcredits:named_actor"]
            actor_names = list(_verified_identity_names(data))
            info = data.get("signature_info")
            if isinstance(info, dict) and isinstance(info.get("common_name"), str) and info["common_name"].strip():
                actor_names.append(info["common_name"].strip())
            if not actor_names:
                notes.append(f"{IDENTITY_LABEL} in {manifest.get('label')} names no actor the SDK decoded")
            codes = [_known_role(code, "endcredits:named_actor", f"CAWG role {clip(code)}", notes) for code in codes]
            for name in actor_names:
                for code in codes:
                    found.append((name, code))
    if len(found) > NAMES_PER_MANIFEST_MAX:
        raise LimitExceededError(
            f"manifest {manifest.get('label')} credits {len(found)} names; at most {NAMES_PER_MANIFEST_MAX}"
        )
    return sorted(set(found))


def _kind_of(mime: str | None) -> str:
    major = (mime or "").partition("/")[0]
    return major if major in ("image", "audio", "video", "text") else "document"


def plan_c2pa(
    conn: Connection, store_json: Mapping[str, Any], data: bytes, *, name: str, mime: str | None, window: Window
) -> tuple[Plan, str]:
    """What importing this manifest store writes, and the work it describes. Reads only."""
    manifests: Mapping[str, Any] = store_json["manifests"]
    active_label = str(store_json["active_manifest"])
    active = manifests[active_label]
    plan = Plan()
    declared = declared_work(active)
    if declared is not None and work_exists(conn, declared):
        work_id = declared
    else:
        if declared is not None:
            plan.notes.append(f"{WORK_LABEL} names work {declared}, not registered here; the asset is registered")
        title = active.get("title") if isinstance(active.get("title"), str) else Path(name).name
        plan.works.append(WorkIn(content=data, title=title or Path(name).name, kind=_kind_of(mime)))
        work_id = content_sha256(data)

    seen: set[str] = set()
    frontier: list[tuple[str, str, int]] = [(active_label, work_id, 0)]
    while frontier:
        label, wid, depth = frontier.pop()
        if label in seen:
            continue
        seen.add(label)
        manifest = manifests.get(label)
        if not isinstance(manifest, dict):
            continue
        decisions = training_mining_decisions(manifest, plan.notes)
        plan.grants.extend(grants_for_decisions(wid, decisions, window, clip(f"c2pa:{label}")))
        plan.credits.extend(CreditName(wid, n, role) for n, role in credited_names(manifest, plan.notes))
        for ingredient in manifest.get("ingredients", []) or []:
            if not isinstance(ingredient, dict):
                continue
            title = clip(str(ingredient.get("title", "untitled")))
            relationship = ingredient.get("relationship")
            parent_label = ingredient.get("active_manifest")
            parent_manifest = manifests.get(parent_label) if isinstance(parent_label, str) else None
            parent = declared_work(parent_manifest) if isinstance(parent_manifest, dict) else None
            stated_hash = ingredient.get("hash")
            if parent is None and isinstance(stated_hash, str) and _SHA256.fullmatch(stated_hash.lower()):
                parent = stated_hash.lower()
            if relationship not in LINEAGE_RELATIONSHIPS:
                plan.notes.append(f"ingredient {title} is {relationship}; only parentOf and componentOf make lineage")
            elif parent is None or not work_exists(conn, parent):
                plan.notes.append(f"ingredient {title} names no registered work; no lineage")
            elif parent == wid:
                plan.notes.append(f"ingredient {title} is the work itself; no lineage")
            else:
                plan.lineage.append(LineageIn(wid, parent))
                if isinstance(parent_label, str):
                    if depth + 1 > LINEAGE_DEPTH_MAX:
                        raise LimitExceededError(
                            f"{name}: ingredient chain deeper than LINEAGE_DEPTH_MAX={LINEAGE_DEPTH_MAX}"
                        )
                    frontier.append((parent_label, parent, depth + 1))
    return plan, work_id


def import_c2pa(
    store: Store, path: Path, window: Window, *, trust_anchors_pem: str | None = None, mime: str | None = None
) -> ImportReport:
    """Read ``path``'s C2PA manifests into grants, credits and lineage, in one transaction."""
    data = read_bounded(path, "C2PA asset", IMPORT_FILE_BYTES_MAX)
    mime = mime or mimetypes.guess_type(path.name)[0]
    store_json = read_manifest_store(data, name=path.name, mime=mime, trust_anchors_pem=trust_anchors_pem)
    with store.engine.connect() as conn:
        plan, work_id = plan_c2pa(conn, store_json, data, name=path.name, mime=mime, window=window)
    return apply_plan(store, plan, kind="c2pa", source=f"c2pa:{store_json['active_manifest']}", work_ids=[work_id])


# Writing -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SigningKey:
    """A C2PA signing credential: the PEM certificate chain (signer first, root last or left out), the
    PEM private key, and the algorithm (``es256``, ``es384``, ``es512``, ``ps256`` or ``ed25519``)."""

    cert_chain_pem: bytes
    private_key_pem: bytes
    alg: str = "es256"


@dataclass(frozen=True)
class Ingredient:
    """An asset this work was made from, with its C2PA relationship (``parentOf`` or ``componentOf``)."""

    data: bytes
    mime: str
    title: str
    relationship: str = "parentOf"


def _export_decisions(grants: Sequence[Grant], at: dt.datetime) -> dict[str, str]:
    in_force = [g for g in grants if g.in_force(at)]
    out: dict[str, str] = {}
    for use in TDM_USES:
        broader = ("ai_training",) if use == "ai_generative_training" else ()
        if any(g.decision == "notAllowed" and (g.use == use or g.use in broader) for g in in_force):
            out[use] = "notAllowed"
        elif any(g.decision == "allowed" and g.use == use for g in in_force):
            out[use] = "allowed"
    return out


def _version() -> str:
    try:
        return importlib.metadata.version("endcredits")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def manifest_for_work(conn: Connection, work_id: str, at: dt.datetime) -> dict[str, Any]:
    """The manifest definition ``sign_work`` signs: the work, its consent in force at ``at``, its credits."""
    row = get_work(conn, work_id)
    assertions: list[dict[str, Any]] = [
        {"label": WORK_LABEL, "data": {"sha256": work_id, "title": row.title, "kind": row.kind}}
    ]
    decisions = _export_decisions([g for _, g in grants_for(conn, [work_id], [])], at)
    if decisions:
        assertions.append(
            {
                "label": "cawg.training-mining",
                "data": {"entries": {f"cawg.{use}": {"use": decision} for use, decision in decisions.items()}},
            }
        )
    contributors = []
    for role_scheme, role_code, who in credited_on(conn, row.seq):
        contributors.append(
            {
                "@type": "Role",
                "roleName": f"{role_scheme}:{role_code}",
                "contributor": {"@type": "Person", "name": who},
            }
        )
    if contributors:
        assertions.append(
            {
                "label": CREATIVE_WORK_LABEL,
                "data": {
                    "@context": "https://schema.org",
                    "@type": "CreativeWork",
                    "name": row.title,
                    "contributor": contributors,
                },
            }
        )
    return {
        "claim_generator_info": [{"name": "endcredits", "version": _version()}],
        "title": row.title,
        "assertions": assertions,
    }


def sign_work(
    store: Store,
    work_id: str,
    asset: bytes,
    mime: str,
    key: SigningKey,
    *,
    at: dt.datetime,
    ingredients: Sequence[Ingredient] = (),
) -> bytes:
    """The asset of registered work ``work_id`` with a signed C2PA manifest embedded. ``asset`` must be
    the work's registered content. Writes nothing to the database."""
    if content_sha256(asset) != work_id:
        raise ValidationError(
            f"the asset's SHA-256 is {content_sha256(asset)}, not work {work_id}: "
            "sign the exact bytes that were registered"
        )
    alg = SIGNING_ALGORITHMS.get(key.alg.lower())
    if alg is None:
        raise ValidationError(f"signing algorithm {key.alg!r} is not one of {', '.join(SIGNING_ALGORITHMS)}")
    for ing in ingredients:
        if ing.relationship not in LINEAGE_RELATIONSHIPS:
            raise ValidationError(f"ingredient {ing.title!r}: relationship must be parentOf or componentOf")
    if sum(ing.relationship == "parentOf" for ing in ingredients) > 1:
        raise ValidationError("a C2PA manifest has at most one parentOf ingredient")
    with store.engine.connect() as conn:
        definition = manifest_for_work(conn, work_id, at)
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, key.cert_chain_pem, key.private_key_pem, None))
        builder = c2pa.Builder(definition)
        if any(ing.relationship == "parentOf" for ing in ingredients):
            builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
        else:
            builder.set_intent(c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.DIGITAL_CREATION)
        for ing in ingredients:
            builder.add_ingredient(
                {"title": ing.title, "relationship": ing.relationship}, ing.mime, io.BytesIO(ing.data)
            )
        out = io.BytesIO()
        builder.sign(signer, mime, io.BytesIO(asset), out)
    except c2pa.C2paError as exc:
        raise ValidationError(f"C2PA signing of work {work_id} failed: {_first_line(exc)}") from None
    return out.getvalue()


__all__ = [
    "Ingredient",
    "SigningKey",
    "credited_names",
    "declared_work",
    "import_c2pa",
    "manifest_for_work",
    "plan_c2pa",
    "read_manifest_store",
    "sign_work",
    "training_mining_decisions",
]
