"""Role vocabularies: every credit's (scheme, code) is a role endcredits knows, on both backends; the
agreement names only known roles; unknown schemes need an explicit flag."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from endcredits.cli.app import app
from endcredits.errors import ValidationError
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_works, name_ids
from endcredits.registry.roles import CAWG, CREDIT, EBU, ENDCREDITS, SCHEMES, canonical_role, check_role, roles
from endcredits.royalties import parse_agreement
from endcredits.store.engine import Store
from endcredits.store.schema import audit_log, credits
from helpers_money import agreement_text

SRC = Path(__file__).resolve().parents[2] / "src"


def test_the_four_schemes_hold_what_their_standards_list() -> None:
    assert len(CREDIT.roles) == 14 and "writing-review-editing" in CREDIT.codes()
    assert set(CAWG.codes()) == {"creator", "contributor", "editor", "producer", "publisher", "sponsor", "translator"}
    assert {
        "background_performer",
        "stunt_performer",
        "scan_subject",
        "vfx_artist",
        "data_labeler",
        "tester",
        "transcriber",
        "composer",
        "collector",
        "performer",
        "rights_holder",
    } <= set(ENDCREDITS.codes())
    assert {r.code: r.label for r in EBU.roles}["15.8"] == "Chief Lighting Technician / Gaffer"
    assert {r.code: r.label for r in EBU.roles}["25.9"].startswith("Actor")
    assert [r.scheme for r in roles()] == [s for s in SCHEMES for _ in SCHEMES[s].roles]


def test_every_endcredits_role_written_in_the_source_is_known() -> None:
    used = set()
    for path in SRC.rglob("*.py"):
        used |= set(re.findall(r"[\"'`]endcredits:([a-z_]+)[\"'`]", path.read_text()))
    used -= {"manifest"}  # "urn:endcredits:manifest:…" is a URN, not a role
    assert used, "the scan found no roles"
    for code in sorted(used):
        assert check_role("endcredits", code) == ("endcredits", code)


def test_ebu_term_names_stand_for_their_term_ids() -> None:
    assert check_role("ebu", "gaffer") == ("ebu", "gaffer")
    assert canonical_role("ebu", "gaffer") == ("ebu", "15.8")
    assert canonical_role("ebu", "lighting") == ("ebu", "15")
    assert canonical_role("ebu", "15.8") == ("ebu", "15.8")
    assert canonical_role("endcredits", "composer") == ("endcredits", "composer")


def test_cawg_entity_specific_roles_are_accepted_as_given() -> None:
    assert check_role("cawg", "com.example.gaffer") == ("cawg", "com.example.gaffer")
    with pytest.raises(ValidationError, match="unknown role cawg:gaffer: scheme cawg knows creator, contributor"):
        check_role("cawg", "gaffer")


def test_an_unknown_code_names_the_schemes_codes_in_one_line() -> None:
    with pytest.raises(ValidationError) as err:
        check_role("endcredits", "lead_actor")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("unknown role endcredits:lead_actor: scheme endcredits knows actor, attributed")
    with pytest.raises(ValidationError, match=r"scheme ebu knows 1, 2, .*more: `endcredits roles list --scheme ebu`"):
        check_role("ebu", "99.99")


def test_an_unknown_scheme_needs_the_explicit_flag() -> None:
    with pytest.raises(ValidationError, match="unknown role scheme 'marc' .* --allow-unknown-scheme"):
        check_role("marc", "act")
    assert check_role("marc", "act", allow_unknown_scheme=True) == ("marc", "act")
    with pytest.raises(ValidationError, match="must be scheme:code"):
        check_role("marc", "Lead Actor", allow_unknown_scheme=True)


def _work(store: Store) -> tuple[str, int]:
    with store.write() as conn:
        (wid,) = add_works(conn, [WorkIn(b"a film frame", "frame", "image")])
        nid = name_ids(conn, ["Gil Gaffer"])["Gil Gaffer"]
    return wid, nid


def _counts(store: Store) -> tuple[int, int]:
    with store.read() as conn:
        return (
            int(conn.execute(select(func.count()).select_from(credits)).scalar_one()),
            int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one()),
        )


def test_credits_with_unknown_roles_are_refused_and_nothing_changes(store: Store) -> None:
    wid, nid = _work(store)
    before = _counts(store)
    for role, message in [
        ("endcredits:grip", "unknown role endcredits:grip: scheme endcredits knows"),
        ("marc:act", "unknown role scheme 'marc'"),
    ]:
        with pytest.raises(ValidationError, match=message), store.write() as conn:
            add_credits(conn, [CreditIn(wid, f"name:{nid}", "ebu:gaffer"), CreditIn(wid, f"name:{nid}", role)])
        assert _counts(store) == before
    with store.write() as conn:
        assert (
            add_credits(
                conn,
                [
                    CreditIn(wid, f"name:{nid}", "ebu:gaffer"),
                    CreditIn(wid, f"name:{nid}", "credit:software"),
                    CreditIn(wid, f"name:{nid}", "cawg:editor"),
                ],
            )
            == 3
        )
        assert add_credits(conn, [CreditIn(wid, f"name:{nid}", "marc:act")], allow_unknown_scheme=True) == 1


def test_the_agreement_names_only_known_roles_and_compares_them_canonically() -> None:
    base = agreement_text()
    ag = parse_agreement(base.replace("[role_weights]", '[role_weights]\n"ebu:15.8" = 4'))
    assert ag.role_weight("ebu", "gaffer") == 4 == ag.role_weight("ebu", "15.8")
    with pytest.raises(ValidationError, match="agreement \\[role_weights\\]: unknown role endcredits:grip"):
        parse_agreement(base.replace("[role_weights]", '[role_weights]\n"endcredits:grip" = 1'))
    with pytest.raises(ValidationError, match="unknown role scheme 'marc'.*extra_role_schemes"):
        parse_agreement(base.replace("[role_weights]", '[role_weights]\n"marc:act" = 1'))
    extra = parse_agreement(
        base.replace("[role_weights]", 'extra_role_schemes = ["marc"]\n[role_weights]\n"marc:act" = 2')
    )
    assert extra.role_weight("marc", "act") == 2
    with pytest.raises(ValidationError, match="names ebu:15.8 twice"):
        parse_agreement(base.replace("[role_weights]", '[role_weights]\n"ebu:15.8" = 1\n"ebu:gaffer" = 2'))


def test_roles_list_prints_every_role_or_one_scheme() -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["roles", "list", "--json"])
    assert out.exit_code == 0, out.output
    listed = json.loads(out.stdout)["roles"]
    assert len(listed) == len(roles())
    assert {
        "scheme": "endcredits",
        "code": "scan_subject",
        "role": "endcredits:scan_subject",
        "label": "Scan subject (the person whose body, face or voice was scanned)",
    } in listed
    cawg = runner.invoke(app, ["roles", "list", "--scheme", "cawg"])
    assert cawg.exit_code == 0 and "cawg:translator" in cawg.stdout and "ebu:" not in cawg.stdout
    bad = runner.invoke(app, ["roles", "list", "--scheme", "marc"])
    assert bad.exit_code == 1 and "unknown role scheme 'marc'" in bad.stderr
