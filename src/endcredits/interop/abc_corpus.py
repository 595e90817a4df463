"""Register the ABC folk tunes (``interop/abc.py``) as works, with their credited names and the consent
their licences state, in one transaction: the demo's corpus, and `endcredits works import-abc`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from endcredits.consent.records import add_grants
from endcredits.consent.rules import Grant
from endcredits.interop.abc import AbcTune, iter_tunes
from endcredits.registry.fingerprints import register_works
from endcredits.registry.records import CreditIn, WorkIn, add_credits, name_ids
from endcredits.store.blobs import put_blob
from endcredits.store.engine import Store


@dataclass(frozen=True)
class AbcImportReport:
    """What `import_abc_corpus` registered."""

    works: int
    credits: int
    names: int
    grants: int
    non_commercial_works: int
    linked: int = 0  # tunes whose fingerprint matched a tune registered before: linked, credits merged


def _grant(work_id: str, use: str, decision: str, source: str) -> Grant:
    return Grant(
        subject_kind="work",
        subject_id=work_id,
        use=use,
        decision=decision,  # type: ignore[arg-type]
        valid_from=dt.datetime(1999, 1, 1, tzinfo=dt.UTC),
        valid_until=None,
        perpetual=True,
        source=source,
    )


def import_abc_corpus(
    store: Store, *, limit: int | None = None, tunes: Sequence[AbcTune] | None = None
) -> AbcImportReport:
    """Register the tunes as works, their credited names, and the licences' consent, in one transaction."""
    items = list(tunes) if tunes is not None else list(iter_tunes(limit=limit))
    for t in items:
        put_blob(store.data_dir, t.text.encode("utf-8"))
    with store.write() as conn:
        ids = name_ids(conn, [c.name for t in items for c in t.credits])
        # By content, then by fingerprint: the same tune transcribed in two collections becomes one work's
        # duplicate (linked, credits merged), as `endcredits works add` would do.
        registered = register_works(
            conn, [WorkIn(t.text.encode("utf-8"), t.title, "abc-tune", t.source) for t in items]
        )
        work_ids = [r.work_id for r in registered]
        linked = sum(1 for r in registered if r.similarity is not None and r.canonical_work_id is not None)
        credit_rows = [
            CreditIn(w, f"name:{ids[c.name]}", f"{c.role_scheme}:{c.role_code}", 1)
            for w, t in zip(work_ids, items)
            for c in t.credits
        ]
        n_credits = add_credits(conn, credit_rows)
        # The corpus licence says these encodings may not be used commercially: a standing refusal,
        # recorded as such (the licence names no end date, so it is explicitly perpetual).
        grants = [
            _grant(w, "commercial", "notAllowed", f"music21 corpus {t.collection}: non-commercial licence")
            for w, t in zip(work_ids, items)
            if t.non_commercial
        ]
        add_grants(conn, grants)
    return AbcImportReport(
        len(set(work_ids)), n_credits, len(ids), len(grants), sum(t.non_commercial for t in items), linked
    )
