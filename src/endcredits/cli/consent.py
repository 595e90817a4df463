"""`consent`: grants per use, bounded in time, revocable; a revocation reports every model that used the work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from endcredits.cli.common import (
    JsonOpt,
    make_console,
    open_store_of,
    print_json,
    print_table,
    time_option,
)
from endcredits.errors import ValidationError

if TYPE_CHECKING:
    from endcredits.consent.rules import Grant

consent_app = typer.Typer(no_args_is_help=True, help="Consent grants per use, bounded in time, revocable.")


def _grant_json(grant_id: int, g: Grant) -> dict[str, Any]:
    return {
        "id": grant_id,
        "subject": f"{g.subject_kind}:{g.subject_id}",
        "use": g.use,
        "decision": g.decision,
        "from": g.valid_from.isoformat(),
        "until": g.valid_until.isoformat() if g.valid_until else "perpetual",
        "revoked_at": g.revoked_at.isoformat() if g.revoked_at else None,
        "source": g.source,
        "use_description": g.use_description,
        "project": g.project,
        "granted_by": g.granted_by,
        "perpetual": g.perpetual,
    }


@consent_app.command("grant")
def consent_grant(
    ctx: typer.Context,
    use: Annotated[str, typer.Option()],
    decision: Annotated[str, typer.Option(help="allowed or notAllowed")],
    source: Annotated[str, typer.Option(help="Where this decision comes from")],
    work: Annotated[str | None, typer.Option()] = None,
    person: Annotated[int | None, typer.Option()] = None,
    valid_from: Annotated[str | None, typer.Option("--from")] = None,
    until: Annotated[str | None, typer.Option()] = None,
    perpetual: Annotated[bool, typer.Option("--perpetual", help="No end date; must be said explicitly")] = False,
    use_description: Annotated[
        str | None, typer.Option(help="What the use is; required to allow likeness_face or likeness_voice")
    ] = None,
    project: Annotated[
        str | None, typer.Option(help="The one project the grant covers; required to allow a likeness use")
    ] = None,
    by: Annotated[int | None, typer.Option(help="The estate person granting for a deceased person")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a consent decision for a work or a person, for one use and a time window (a digital replica:
    with the use described and the project named)."""
    from endcredits.consent.records import add_grants
    from endcredits.consent.rules import Grant

    if (work is None) == (person is None):
        raise ValidationError("give exactly one of --work ID or --person ID")
    if until is None and not perpetual:
        raise ValidationError("give --until TIME, or --perpetual to say explicitly that it never ends")
    grant = Grant(
        subject_kind="work" if work else "person",
        subject_id=work or str(person),
        use=use,
        decision=decision,  # type: ignore[arg-type]
        valid_from=time_option(valid_from, "--from"),
        valid_until=time_option(until, "--until") if until else None,
        perpetual=perpetual,
        source=source,
        use_description=use_description,
        project=project,
        granted_by=None if by is None else str(by),
    )
    with open_store_of(ctx) as store, store.write() as conn:
        (gid,) = add_grants(conn, [grant])
    if as_json:
        print_json({"grant_id": gid, "grant": _grant_json(gid, grant)})
    else:
        make_console().print(f"consent grant {gid}")


@consent_app.command("revoke")
def consent_revoke(
    ctx: typer.Context,
    grant_id: int,
    at: Annotated[str | None, typer.Option()] = None,
    by: Annotated[int | None, typer.Option(help="The estate person revoking for a deceased person")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a grant, and report every model, manifest and training run that already used the work
    (or a work derived from it)."""
    from endcredits.consent.records import revoke_grant
    from endcredits.manifest.records import revocation_report
    from endcredits.registry.records import works_of_person

    with open_store_of(ctx) as store, store.write() as conn:
        grant = revoke_grant(conn, grant_id, time_option(at, "--at"), by=None if by is None else str(by))
        work_ids = [grant.subject_id] if grant.subject_kind == "work" else works_of_person(conn, int(grant.subject_id))
        affected = revocation_report(conn, work_ids)
    affected_rows = [
        {
            "model": u.model_id,
            "manifest": u.manifest_id,
            "work": u.work_id,
            "via": u.via,
            "training_runs": list(u.training_run_ids),
        }
        for u in affected
    ]
    report: dict[str, Any] = {
        "grant": grant_id,
        "revoked_use": grant.use,
        "subject": f"{grant.subject_kind}:{grant.subject_id}",
        "models": sorted({u.model_id for u in affected}),
        "manifests": sorted({u.manifest_id for u in affected}),
        "affected": affected_rows,
    }
    if as_json:
        print_json(report)
    else:
        make_console().print(
            f"grant {grant_id} revoked; {len(report['models'])} models and {len(report['manifests'])} "
            f"manifests used the work: {len(affected)} (manifest, work) uses to report"
        )
        for a in affected_rows:
            via = f" (derived from {a['via']})" if a["via"] else ""
            runs = f"; training runs {', '.join(a['training_runs'])}" if a["training_runs"] else ""
            make_console().print(f"  model {a['model']} manifest {a['manifest']} used work {a['work']}{via}{runs}")


@consent_app.command("list")
def consent_list(
    ctx: typer.Context,
    work: Annotated[str | None, typer.Option()] = None,
    person: Annotated[int | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Grants on a work or a person."""
    from endcredits.consent.records import grants_for

    with open_store_of(ctx) as store, store.read() as conn:
        grants = grants_for(conn, [work] if work else [], [str(person)] if person is not None else [])
    rows = [_grant_json(i, g) for i, g in grants]
    if as_json:
        print_json({"grants": rows})
    else:
        print_table(
            "consent",
            ["id", "subject", "use", "decision", "until", "revoked", "source"],
            [
                [r["id"], r["subject"][:24], r["use"], r["decision"], r["until"], r["revoked_at"] or "", r["source"]]
                for r in rows
            ],
        )


@consent_app.command("terms")
def consent_terms(
    ctx: typer.Context,
    work: Annotated[str, typer.Option(help="The work (its SHA-256).")],
    as_json: JsonOpt = False,
) -> None:
    """Licence terms on a work: the price each licence states (payment type, amount, currency) for its uses."""
    from endcredits.consent.terms import terms_for
    from endcredits.money import format_amount

    with open_store_of(ctx) as store, store.read() as conn:
        terms = terms_for(conn, [work])
    rows = [
        {
            "id": i,
            "work": t.work_id,
            "payment_type": t.payment_type,
            "amount_microunits": t.amount_microunits,
            "amount": format_amount(t.amount_microunits, t.currency),
            "currency": t.currency,
            "uses": list(t.uses),
            "from": t.valid_from.isoformat(),
            "until": t.valid_until.isoformat() if t.valid_until else "perpetual",
            "source": t.source,
        }
        for i, t in terms
    ]
    if as_json:
        print_json({"terms": rows})
    else:
        print_table(
            "licence terms",
            ["id", "payment", "amount", "uses", "until", "source"],
            [
                [
                    i,
                    t.payment_type,
                    format_amount(t.amount_microunits, t.currency),
                    ",".join(t.uses),
                    r["until"],
                    t.source,
                ]
                for (i, t), r in zip(terms, rows, strict=True)
            ],
        )


def print_impact(report: dict[str, Any], headline: str) -> None:
    console = make_console()
    console.print(
        f"{headline}; {len(report['models'])} models, {len(report['manifests'])} manifests and "
        f"{len(report['training_runs'])} training runs used the affected works"
    )
    for m in report["manifests"]:
        before = " (built before the suspension)" if m["built_before_suspension"] else ""
        runs = f"; training runs {', '.join(m['training_runs'])}" if m["training_runs"] else ""
        console.print(f"  model {m['model']} manifest {m['manifest']} as of {m['as_of']}{before}{runs}")
    for t in report["perpetual_grants"]:
        console.print(f"  [bold]{t['flag']}[/bold]: grant {t['grant']} ({t['subject']}, {t['use']}) on {t['work']}")


@consent_app.command("suspend")
def consent_suspend(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Why, e.g. 'SAG-AFTRA strike 2026'")],
    person: Annotated[int | None, typer.Option(help="The person suspending consent to their works")] = None,
    issuer: Annotated[
        str | None, typer.Option(help="The credential issuer (a guild) suspending for every person it credentialed")
    ] = None,
    use: Annotated[list[str] | None, typer.Option(help="A use to suspend; repeat; none: every use")] = None,
    starts: Annotated[str | None, typer.Option(help="When it starts (ISO-8601; default now)")] = None,
    ends: Annotated[str | None, typer.Option(help="When it ends (ISO-8601; default: until lifted)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Suspend consent (for example during a strike): manifests built while it lasts exclude the works, and
    the report lists every model already trained on them."""
    from endcredits.consent.rules import Suspension
    from endcredits.manifest.reports import suspend_and_report

    if (person is None) == (issuer is None):
        raise ValidationError("give exactly one of --person ID or --issuer ID")
    suspension = Suspension(
        subject_kind="person" if person is not None else "issuer",
        subject_id=str(person) if person is not None else str(issuer),
        uses=tuple(use or ()),
        starts_at=time_option(starts, "--starts"),
        ends_at=time_option(ends, "--ends") if ends else None,
        reason=reason,
    )
    with open_store_of(ctx) as store, store.write() as conn:
        sid, impact = suspend_and_report(conn, suspension)
    report = {"suspension_id": sid, **impact.to_json()}
    print_json(report) if as_json else print_impact(report, f"suspension {sid}")


@consent_app.command("lift")
def consent_lift(
    ctx: typer.Context, suspension_id: int, at: Annotated[str | None, typer.Option()] = None, as_json: JsonOpt = False
) -> None:
    """End a suspension at --at (default now)."""
    from endcredits.consent.records import lift_suspension

    with open_store_of(ctx) as store, store.write() as conn:
        s = lift_suspension(conn, suspension_id, time_option(at, "--at"))
    ends = s.ends_at.isoformat() if s.ends_at else None
    print_json({"suspension_id": suspension_id, "ends_at": ends}) if as_json else make_console().print(
        f"suspension {suspension_id} ends at {ends}"
    )


@consent_app.command("suspensions")
def consent_suspensions(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every suspension, by id."""
    from endcredits.consent.records import suspensions_list

    with open_store_of(ctx) as store, store.read() as conn:
        listed = suspensions_list(conn)
    rows = [
        {
            "id": i,
            "subject": f"{s.subject_kind}:{s.subject_id}",
            "uses": list(s.uses) or "all",
            "starts_at": s.starts_at.isoformat(),
            "ends_at": s.ends_at.isoformat() if s.ends_at else None,
            "reason": s.reason,
        }
        for i, s in listed
    ]
    if as_json:
        print_json({"suspensions": rows})
    else:
        print_table(
            "suspensions",
            ["id", "subject", "uses", "starts", "ends", "reason"],
            [[r["id"], r["subject"], str(r["uses"]), r["starts_at"], r["ends_at"] or "", r["reason"]] for r in rows],
        )
