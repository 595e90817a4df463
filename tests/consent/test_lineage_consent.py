"""Consent across lineage on both backends: scan -> digital double -> film; the most restrictive term wins,
a cycle is refused, every consent change is audited, a window that ends before it starts is refused, and
a revocation reports every model, manifest and training run that used the work or a work derived from it."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from endcredits.cli.app import app
from endcredits.consent.records import add_grants, revoke_grant
from endcredits.consent.rules import Decision, Grant, inherit_across_lineage
from endcredits.errors import ValidationError
from endcredits.manifest.build import build_manifest
from endcredits.manifest.records import record_training_run, revocation_report
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_lineage, add_works
from endcredits.store.audit import iter_audit
from endcredits.store.engine import Store
from endcredits.store.schema import audit_log, consent_grants, lineage
from helpers_money import people

UTC = dt.UTC
T0 = dt.datetime(2025, 1, 1, tzinfo=UTC)
AS_OF = dt.datetime(2026, 1, 1, tzinfo=UTC)
GEN = "ai_generative_training"


@dataclass(frozen=True)
class Chain:
    scan: str
    double: str
    film: str
    other: str
    subject: int


@pytest.fixture
def chain(store: Store) -> Chain:
    subject, artist, actor = people(store, "subject", "artist", "actor")
    with store.write() as conn:
        scan, double, film, other = add_works(
            conn, [WorkIn(t.encode(), t, "image") for t in ("body scan", "digital double", "film", "unrelated")]
        )
        add_credits(
            conn,
            [
                CreditIn(scan, f"person:{subject}", "endcredits:scan_subject"),
                CreditIn(double, f"person:{artist}", "endcredits:vfx_artist"),
                CreditIn(film, f"person:{actor}", "ebu:25.9"),
            ],
        )
        add_lineage(conn, double, scan, None)
        add_lineage(conn, film, double, None)
    return Chain(scan, double, film, other, subject)


def _person_grant(subject: int, decision: str, use: str = GEN) -> Grant:
    return Grant(
        subject_kind="person",
        subject_id=str(subject),
        use=use,
        decision=decision,  # type: ignore[arg-type]
        valid_from=T0,
        valid_until=None,
        perpetual=True,
        source="scan-studio/release.pdf",
    )


def test_a_not_allowed_on_the_scan_keeps_the_double_and_the_film_out(store: Store, chain: Chain) -> None:
    with store.write() as conn:
        add_grants(conn, [_person_grant(chain.subject, "notAllowed")])
    m = build_manifest(store, model_id="gen", uses=[GEN], as_of=AS_OF, default="opt-out")
    assert m.included == (chain.other,)
    reasons = dict(m.excluded)
    assert set(reasons) == {chain.scan, chain.double, chain.film}
    assert reasons[chain.scan].startswith(f"notAllowed for {GEN} by person grant of {chain.subject}")
    assert reasons[chain.double] == f"inherited from upstream work {chain.scan}: {reasons[chain.scan]}"
    assert reasons[chain.film] == f"inherited from upstream work {chain.scan}: {reasons[chain.scan]}"
    # Another use the scan subject did not refuse: all four are in.
    research = build_manifest(store, model_id="res", uses=["research"], as_of=AS_OF, default="opt-out")
    assert set(research.included) == {chain.scan, chain.double, chain.film, chain.other}


def test_terms_flow_downstream_only(store: Store, chain: Chain) -> None:
    with store.write() as conn:
        add_grants(
            conn,
            [
                Grant(
                    subject_kind="work",
                    subject_id=chain.film,
                    use=GEN,
                    decision="notAllowed",
                    valid_from=T0,
                    valid_until=None,
                    perpetual=True,
                    source="studio/licence.txt",
                )
            ],
        )
    m = build_manifest(store, model_id="gen", uses=[GEN], as_of=AS_OF, default="opt-out")
    assert set(m.included) == {chain.scan, chain.double, chain.other}
    assert dict(m.excluded)[chain.film].startswith(f"notAllowed for {GEN} by work grant")


def test_the_most_restrictive_wins_even_over_an_explicit_allowed_downstream(store: Store, chain: Chain) -> None:
    with store.write() as conn:
        add_grants(
            conn,
            [
                _person_grant(chain.subject, "notAllowed"),
                Grant(
                    subject_kind="work",
                    subject_id=chain.film,
                    use=GEN,
                    decision="allowed",
                    valid_from=T0,
                    valid_until=None,
                    perpetual=True,
                    source="studio/licence.txt",
                ),
            ],
        )
    m = build_manifest(store, model_id="gen", uses=[GEN], as_of=AS_OF, default="opt-in")
    assert m.included == ()
    assert f"inherited from upstream work {chain.scan}" in dict(m.excluded)[chain.film]


def test_a_lineage_cycle_is_refused_in_one_line_and_nothing_changes(store: Store, chain: Chain) -> None:
    with store.read() as conn:
        before = conn.execute(select(func.count()).select_from(lineage)).scalar_one()
    with (
        pytest.raises(ValidationError, match=f"lineage {chain.scan} <- {chain.film} would make a cycle"),
        store.write() as conn,
    ):
        add_lineage(conn, chain.scan, chain.film, None)
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(lineage)).scalar_one() == before


def test_the_pure_rule_refuses_a_cycle_it_is_handed() -> None:
    allowed = Decision(allowed=True, reason="ok", grant=None)
    parents = {"film": ["double"], "double": ["scan"], "scan": ["film"]}
    with pytest.raises(ValidationError, match="lineage cycle: film <- double <- scan <- film"):
        inherit_across_lineage(["film"], parents, {"film": allowed})
    with pytest.raises(ValidationError, match="lineage cycle: w <- w"):
        inherit_across_lineage(["w"], {"w": ["w"]}, {})


def test_inherited_reasons_name_the_nearest_upstream_work_first() -> None:
    no = {w: Decision(allowed=False, reason=f"notAllowed by {w}", grant=None) for w in ("a", "b")}
    parents = {"c": ["b"], "b": ["a"]}
    out = inherit_across_lineage(["c"], parents, {**no, "c": Decision(True, "fine", None)})
    assert out["c"] == Decision(
        allowed=False,
        reason="inherited from upstream work b: notAllowed by b; inherited from upstream work a: notAllowed by a",
        grant=None,
    )


def test_every_consent_change_is_in_the_audit_log(store: Store, chain: Chain) -> None:
    with store.write() as conn:
        (gid,) = add_grants(conn, [_person_grant(chain.subject, "notAllowed")])
        revoke_grant(conn, gid, AS_OF)
    with store.read() as conn:
        granted = [json.loads(e.payload) for e in iter_audit(conn, kind="consent.granted")]
        revoked = [(e.subject, json.loads(e.payload)) for e in iter_audit(conn, kind="consent.revoked")]
    assert granted == [{"count": 1, "ids": [gid]}]
    assert revoked == [
        (
            f"grant:{gid}",
            {"subject": f"person:{chain.subject}", "use": GEN, "revoked_at": "2026-01-01T00:00:00.000000Z"},
        )
    ]


def _count(store: Store, table: object) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_a_window_that_ends_before_it_starts_is_refused_and_nothing_changes(
    store: Store, chain: Chain, tmp_path: Path, db_url: str | None
) -> None:
    with pytest.raises(ValidationError, match="must be after valid_from"):
        Grant(
            subject_kind="work",
            subject_id=chain.scan,
            use=GEN,
            decision="allowed",
            valid_from=AS_OF,
            valid_until=T0,
            perpetual=False,
            source="x",
        )
    before = (_count(store, consent_grants), _count(store, audit_log))
    where = ["--db", db_url] if db_url else ["--data", str(tmp_path / "data")]
    out = CliRunner().invoke(
        app,
        [
            *where,
            "consent",
            "grant",
            "--work",
            chain.scan,
            "--use",
            GEN,
            "--decision",
            "allowed",
            "--source",
            "x",
            "--from",
            "2026-02-01",
            "--until",
            "2026-01-01",
        ],
    )
    assert out.exit_code == 1
    assert out.stderr.count("\n") == 1 and "must be after valid_from" in out.stderr
    assert (_count(store, consent_grants), _count(store, audit_log)) == before


def test_a_revocation_reports_models_manifests_and_runs_through_lineage(
    store: Store, chain: Chain, tmp_path: Path, db_url: str | None
) -> None:
    with store.write() as conn:
        (gid,) = add_grants(conn, [_person_grant(chain.subject, "allowed")])
    m = build_manifest(store, model_id="gen", uses=[GEN], as_of=AS_OF, default="opt-out")
    assert set(m.included) == {chain.scan, chain.double, chain.film, chain.other}
    with store.write() as conn:
        record_training_run(
            conn,
            run_id="run-1",
            manifest_id=m.id,
            checkpoint_sha256s=["ab" * 32],
            started_at=AS_OF,
            finished_at=AS_OF + dt.timedelta(hours=1),
        )
        report = revocation_report(conn, [chain.scan])
    assert [(u.manifest_id, u.work_id, u.via, u.training_run_ids) for u in report] == sorted(
        [
            (m.id, chain.scan, None, ("run-1",)),
            (m.id, chain.double, chain.scan, ("run-1",)),
            (m.id, chain.film, chain.scan, ("run-1",)),
        ],
        key=lambda t: t[1],
    )

    where = ["--db", db_url] if db_url else ["--data", str(tmp_path / "data")]
    out = CliRunner().invoke(app, [*where, "consent", "revoke", str(gid), "--at", "2026-02-01", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["models"] == ["gen"] and data["manifests"] == [m.id]
    assert {(a["work"], a["via"]) for a in data["affected"]} == {
        (chain.scan, None),
        (chain.double, chain.scan),
        (chain.film, chain.scan),
    }
    assert all(a["training_runs"] == ["run-1"] for a in data["affected"])


def test_lineage_goes_through_linked_duplicates(store: Store, chain: Chain) -> None:
    """A copy of the scan, linked to it, is the scan's content: what derives from the copy inherits the
    scan's refusal; and a copy that derives from a refused work keeps its canonical work out."""
    from endcredits.registry.records import link_works

    with store.write() as conn:
        copy, remix, source = add_works(
            conn,
            [WorkIn(t.encode(), t, "image") for t in ("body scan, re-encoded", "remix of the copy", "refused source")],
        )
        link_works(conn, copy, chain.scan, method="operator", similarity_ppm=None, linked_by="operator")
        add_lineage(conn, remix, copy, None)  # derived from the duplicate, not from the scan itself
        add_grants(conn, [_person_grant(chain.subject, "notAllowed")])
    m = build_manifest(store, model_id="gen", uses=[GEN], as_of=AS_OF, default="opt-out")
    reasons = dict(m.excluded)
    assert reasons[copy].startswith(f"duplicate of {chain.scan}")
    assert reasons[remix] == f"inherited from upstream work {chain.scan}: {reasons[chain.scan]}"
    assert set(m.included) == {chain.other, source}

    with store.write() as conn:  # the other direction: the duplicate's own upstream binds its group
        (other_copy,) = add_works(conn, [WorkIn(b"unrelated, re-encoded", "unrelated copy", "image")])
        link_works(conn, other_copy, chain.other, method="operator", similarity_ppm=None, linked_by="operator")
        add_lineage(conn, other_copy, source, None)
        add_grants(
            conn,
            [
                Grant(
                    subject_kind="work",
                    subject_id=source,
                    use=GEN,
                    decision="notAllowed",
                    valid_from=T0,
                    valid_until=None,
                    perpetual=True,
                    source="owner/letter.txt",
                )
            ],
        )
    m = build_manifest(store, model_id="gen2", uses=[GEN], as_of=AS_OF, default="opt-out")
    assert m.included == ()
    assert dict(m.excluded)[chain.other] == f"inherited from upstream work {source}: {dict(m.excluded)[source]}"


def test_a_revocation_on_a_duplicate_reports_the_manifests_that_used_its_group(store: Store, chain: Chain) -> None:
    """A manifest lists a group by its canonical work: revoking on a linked copy reaches that leaf, and
    what derives from the copy."""
    from endcredits.registry.records import link_works

    with store.write() as conn:
        copy, remix = add_works(conn, [WorkIn(t.encode(), t, "image") for t in ("scan copy", "remix of copy")])
        link_works(conn, copy, chain.scan, method="operator", similarity_ppm=None, linked_by="operator")
        add_lineage(conn, remix, copy, None)
    m = build_manifest(store, model_id="gen", uses=[GEN], as_of=AS_OF, default="opt-out")
    assert chain.scan in m.included and copy not in m.included and remix in m.included
    with store.read() as conn:
        report = revocation_report(conn, [copy])
    assert {(u.work_id, u.via) for u in report} == {
        (chain.scan, copy),
        (chain.double, copy),
        (chain.film, copy),
        (remix, copy),
    }
