"""Consent rules: grants in force, precedence, training implication, and validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from endcredits.consent.rules import USES, Decision, Grant, decide
from endcredits.errors import LimitExceededError, ValidationError
from endcredits.limits import CREDITS_PER_WORK_MAX

WORK = "a" * 64
OTHER_WORK = "b" * 64
T0 = datetime(2024, 1, 1, tzinfo=UTC)
T1 = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
TICK = timedelta(microseconds=1)


def grant(
    kind: str,
    subject: str,
    use: str,
    decision: str,
    *,
    source: str | None = None,
    valid_from: datetime = T0,
    valid_until: datetime | None = None,
    revoked_at: datetime | None = None,
) -> Grant:
    return Grant(
        subject_kind=kind,  # type: ignore[arg-type]
        subject_id=subject,
        use=use,
        decision=decision,  # type: ignore[arg-type]
        valid_from=valid_from,
        valid_until=valid_until,
        perpetual=valid_until is None,
        source=source or f"{kind}/{subject}/{use}/{decision}.json",
        revoked_at=revoked_at,
    )


def person(subject: str, use: str, decision: str, **kw: object) -> Grant:
    return grant("person", subject, use, decision, **kw)  # type: ignore[arg-type]


def work(use: str, decision: str, subject: str = WORK, **kw: object) -> Grant:
    return grant("work", subject, use, decision, **kw)  # type: ignore[arg-type]


def run(
    grants: list[Grant],
    uses: list[str],
    default: str = "opt-in",
    at: datetime = NOW,
    people: tuple[str, ...] = ("p1", "p2"),
) -> Decision:
    return decide(WORK, people, uses, at, grants, default=default)  # type: ignore[arg-type]


# Precedence -------------------------------------------------------------------------------------

C = "commercial"

PRECEDENCE = [
    # (id, grants, default, allowed, reason fragment, cited source or None)
    ("none-opt-out", [], "opt-out", True, "no grant for commercial; operator default opt-out", None),
    ("none-opt-in", [], "opt-in", False, "no grant for commercial; operator default opt-in", None),
    ("work-allows", [work(C, "allowed")], "opt-in", True, "allowed for commercial by work grant", "work"),
    ("work-forbids", [work(C, "notAllowed")], "opt-out", False, "notAllowed for commercial by work grant", "work"),
    ("work-both", [work(C, "allowed"), work(C, "notAllowed")], "opt-out", False, "by work grant", "work"),
    (
        "person-over-work-allow",
        [person("p1", C, "allowed"), work(C, "notAllowed")],
        "opt-in",
        True,
        "allowed for commercial by person grant of p1",
        "p1",
    ),
    (
        "person-over-work-forbid",
        [person("p1", C, "notAllowed"), work(C, "allowed")],
        "opt-out",
        False,
        "notAllowed for commercial by person grant of p1",
        "p1",
    ),
    (
        "any-person-forbids",
        [person("p1", C, "allowed"), person("p2", C, "notAllowed")],
        "opt-out",
        False,
        "notAllowed for commercial by person grant of p2",
        "p2",
    ),
    ("one-person-allows", [person("p2", C, "allowed")], "opt-in", True, "by person grant of p2", "p2"),
    ("uncredited-ignored", [person("p9", C, "notAllowed")], "opt-out", True, "operator default opt-out", None),
    (
        "uncredited-ignored-2",
        [person("p9", C, "allowed"), work(C, "notAllowed")],
        "opt-out",
        False,
        "by work grant",
        "work",
    ),
    ("other-work-ignored", [work(C, "notAllowed", subject=OTHER_WORK)], "opt-out", True, "operator default", None),
    ("person-kind-matters", [person(WORK, C, "notAllowed")], "opt-out", True, "operator default", None),
    ("other-use-ignored", [work("research", "notAllowed")], "opt-out", True, "no grant for commercial", None),
    (
        "expired-falls-through",
        [person("p1", C, "notAllowed", valid_until=NOW), work(C, "allowed")],
        "opt-in",
        True,
        "by work grant",
        "work",
    ),
    (
        "revoked-falls-through",
        [person("p1", C, "allowed", revoked_at=NOW - TICK)],
        "opt-in",
        False,
        "operator default opt-in",
        None,
    ),
]


@pytest.mark.parametrize(
    ("grants", "default", "allowed", "fragment", "cited"), [p[1:] for p in PRECEDENCE], ids=[p[0] for p in PRECEDENCE]
)
def test_precedence(grants: list[Grant], default: str, allowed: bool, fragment: str, cited: str | None) -> None:
    d = run(grants, [C], default)
    assert d.allowed is allowed
    assert fragment in d.reason
    if cited is None:
        assert d.grant is None
    else:
        assert d.grant is not None and d.grant.subject_id == (WORK if cited == "work" else cited)
        assert f"(source: {d.grant.source})" in d.reason


def test_reason_reads_as_documented() -> None:
    g = work(C, "notAllowed", source="essenFolksong/license.txt")
    assert run([g], [C], "opt-out") == Decision(
        allowed=False, reason="notAllowed for commercial by work grant (source: essenFolksong/license.txt)", grant=g
    )
    assert run([], [C], "opt-in").reason == "no grant for commercial; operator default opt-in"


# Training implies generative training -------------------------------------------------------------

GEN, TRAIN = "ai_generative_training", "ai_training"


@pytest.mark.parametrize(
    ("grants", "default", "allowed", "fragment"),
    [
        (
            [person("p1", TRAIN, "notAllowed")],
            "opt-out",
            False,
            "notAllowed for ai_generative_training by person grant of p1 for ai_training",
        ),
        ([work(TRAIN, "notAllowed")], "opt-out", False, "by work grant for ai_training"),
        ([person("p1", GEN, "allowed"), person("p1", TRAIN, "notAllowed")], "opt-out", False, "for ai_training"),
        ([person("p1", GEN, "allowed"), person("p2", TRAIN, "notAllowed")], "opt-out", False, "p2 for ai_training"),
        ([person("p1", GEN, "allowed"), work(TRAIN, "notAllowed")], "opt-in", True, "allowed for ai_generative"),
        ([work(TRAIN, "allowed")], "opt-in", False, "no grant for ai_generative_training; operator default opt-in"),
        ([work(TRAIN, "allowed"), work(GEN, "allowed")], "opt-in", True, "by work grant (source"),
    ],
)
def test_not_allowed_for_training_forbids_generative_training(
    grants: list[Grant], default: str, allowed: bool, fragment: str
) -> None:
    d = run(grants, [GEN], default)
    assert d.allowed is allowed
    assert fragment in d.reason


def test_not_allowed_for_generative_training_leaves_training_alone() -> None:
    grants = [work(GEN, "notAllowed")]
    assert run(grants, [TRAIN], "opt-out").allowed
    assert not run(grants, [GEN], "opt-out").allowed
    assert not run(grants, [TRAIN, GEN], "opt-out").allowed


# Several uses -----------------------------------------------------------------------------------


def test_every_use_must_be_allowed_and_the_first_forbidden_decides() -> None:
    forbid_c = work(C, "notAllowed")
    forbid_r = person("p1", "research", "notAllowed")
    d = run([forbid_c], ["research", C], "opt-out")
    assert not d.allowed and d.grant == forbid_c and d.reason.startswith("notAllowed for commercial")
    both = run([forbid_c, forbid_r], [C, "research"], "opt-out")
    assert both == run([forbid_r, forbid_c], ["research", C, "research"], "opt-out")
    assert both.grant == forbid_r  # research comes before commercial in USES
    assert both.reason.index("research") < both.reason.index("commercial")
    ok = run([work("research", "allowed")], [C, "research"], "opt-out")
    assert ok.allowed and "allowed for research by work grant" in ok.reason and "commercial" in ok.reason


# Windows and revocation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "in_force"),
    [(T0 - TICK, False), (T0, True), (NOW, True), (T1 - TICK, True), (T1, False), (T1 + TICK, False)],
    ids=["before", "at-start", "inside", "last-instant", "at-end", "after"],
)
def test_window_is_half_open(at: datetime, in_force: bool) -> None:
    g = work(C, "allowed", valid_until=T1)
    assert g.in_force(at) is in_force
    assert run([g], [C], "opt-in", at=at).allowed is in_force


def test_perpetual_grant_has_no_end() -> None:
    g = work(C, "allowed")
    assert g.perpetual and g.valid_until is None
    assert g.in_force(datetime(9999, 12, 31, tzinfo=UTC))
    assert not g.in_force(T0 - TICK)


@pytest.mark.parametrize(
    ("revoked_at", "in_force"),
    [(NOW + TICK, True), (NOW, False), (NOW - TICK, False), (T0 - timedelta(days=1), False), (None, True)],
    ids=["after-at", "at-at", "before-at", "before-start", "never"],
)
def test_revocation_at_or_before_the_time_ends_the_grant(revoked_at: datetime | None, in_force: bool) -> None:
    g = person("p1", C, "allowed", revoked_at=revoked_at)
    assert g.in_force(NOW) is in_force
    assert run([g], [C], "opt-in").allowed is in_force


def test_time_zones_compare_as_instants() -> None:
    plus5 = timezone(timedelta(hours=5))
    g = work(C, "allowed", valid_until=datetime(2024, 6, 1, 5, tzinfo=plus5))  # = NOW in UTC
    assert g.in_force(NOW - TICK) and not g.in_force(NOW)


# Validation -------------------------------------------------------------------------------------


def test_perpetual_must_be_explicit() -> None:
    with pytest.raises(ValidationError, match="perpetual=True"):
        Grant("work", WORK, C, "allowed", valid_from=T0, valid_until=None, perpetual=False, source="x")
    with pytest.raises(ValidationError, match="perpetual but has a valid_until"):
        Grant("work", WORK, C, "allowed", valid_from=T0, valid_until=T1, perpetual=True, source="x")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"use": "ai_everything"}, "unknown use"),
        ({"decision": "constrained"}, "'allowed' or 'notAllowed'"),
        ({"subject_kind": "studio"}, "'work' or 'person'"),
        ({"subject_id": ""}, "subject_id"),
        ({"source": ""}, "needs a source"),
        ({"valid_from": datetime(2024, 1, 1)}, "no time zone"),
        ({"valid_until": datetime(2025, 1, 1), "perpetual": False}, "no time zone"),
        ({"revoked_at": datetime(2024, 3, 1)}, "no time zone"),
        ({"valid_until": T0, "perpetual": False}, "must be after valid_from"),
        ({"valid_until": T0 - TICK, "perpetual": False}, "must be after valid_from"),
        ({"perpetual": 1}, "perpetual must be True or False"),
    ],
)
def test_malformed_grants_are_refused(kwargs: dict[str, object], fragment: str) -> None:
    fields: dict[str, object] = {
        "subject_kind": "work",
        "subject_id": WORK,
        "use": C,
        "decision": "allowed",
        "valid_from": T0,
        "valid_until": None,
        "perpetual": True,
        "source": "x",
    }
    fields.update(kwargs)
    with pytest.raises(ValidationError, match=fragment):
        Grant(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"uses": ["ai_everything"]}, "unknown use"),
        ({"uses": []}, "non-empty list of uses"),
        ({"uses": "commercial"}, "non-empty list of uses"),
        ({"at": datetime(2024, 6, 1)}, "no time zone"),
        ({"default": "opt-maybe"}, "'opt-in' or 'opt-out'"),
        ({"work_id": ""}, "work id"),
        ({"credited_person_ids": "p1"}, "not one string"),
        ({"grants": [("work", WORK)]}, "Grant objects"),
    ],
)
def test_malformed_decide_arguments_are_refused(args: dict[str, object], fragment: str) -> None:
    call: dict[str, object] = {
        "work_id": WORK,
        "credited_person_ids": ["p1"],
        "uses": [C],
        "at": NOW,
        "grants": [],
        "default": "opt-in",
    }
    call.update(args)
    with pytest.raises(ValidationError, match=fragment):
        decide(**call)  # type: ignore[arg-type]


def test_too_many_credited_people_is_a_limit() -> None:
    people = [f"p{i}" for i in range(CREDITS_PER_WORK_MAX + 1)]
    with pytest.raises(LimitExceededError, match="CREDITS_PER_WORK_MAX"):
        decide(WORK, people, [C], NOW, [], default="opt-in")


# Determinism and an independent oracle ------------------------------------------------------------

PLUS5 = timezone(timedelta(hours=5))
TIMES = [T0 + timedelta(days=d) for d in range(0, 400, 50)]
SUBJECTS = [("person", "p1"), ("person", "p2"), ("person", "p3"), ("work", WORK), ("work", OTHER_WORK)]
SMALL_USES = [GEN, TRAIN, C, "research"]


@st.composite
def grants_strategy(draw: st.DrawFn) -> Grant:
    kind, subject = draw(st.sampled_from(SUBJECTS))
    start = draw(st.sampled_from(TIMES))
    end = draw(st.none() | st.sampled_from([t for t in TIMES if t > start] or [start + TICK]))
    revoked = draw(st.none() | st.sampled_from(TIMES))
    tz = draw(st.sampled_from([UTC, PLUS5]))
    return grant(
        kind,
        subject,
        draw(st.sampled_from(SMALL_USES)),
        draw(st.sampled_from(["allowed", "notAllowed"])),
        source=draw(st.sampled_from(["s/a", "s/b"])),
        valid_from=start.astimezone(tz),
        valid_until=None if end is None else end.astimezone(tz),
        revoked_at=revoked,
    )


def oracle(people: set[str], uses: list[str], at: datetime, grants: list[Grant], default: str) -> bool:
    """The rules restated plainly: one use at a time, one level at a time."""
    for use in uses:
        covers = {use, TRAIN} if use == GEN else {use}
        live = [
            g
            for g in grants
            if g.valid_from <= at
            and (g.valid_until is None or at < g.valid_until)
            and (g.revoked_at is None or at < g.revoked_at)
        ]
        verdict = None
        for level in (
            [g for g in live if g.subject_kind == "person" and g.subject_id in people],
            [g for g in live if g.subject_kind == "work" and g.subject_id == WORK],
        ):
            if any(g.decision == "notAllowed" and g.use in covers for g in level):
                verdict = False
            elif any(g.decision == "allowed" and g.use == use for g in level):
                verdict = True
            if verdict is not None:
                break
        if verdict is None:
            verdict = default == "opt-out"
        if not verdict:
            return False
    return True


@given(
    st.lists(grants_strategy(), max_size=12),
    st.lists(st.sampled_from(SMALL_USES), min_size=1, max_size=3),
    st.sets(st.sampled_from(["p1", "p2", "p3"])),
    st.sampled_from(TIMES + [t - TICK for t in TIMES]),
    st.sampled_from(["opt-in", "opt-out"]),
    st.data(),
)
def test_decision_ignores_grant_order_and_matches_the_oracle(
    grants: list[Grant], uses: list[str], people: set[str], at: datetime, default: str, data: st.DataObject
) -> None:
    d = decide(WORK, sorted(people), uses, at, grants, default=default)  # type: ignore[arg-type]
    shuffled = data.draw(st.permutations(grants))
    again = decide(
        WORK,
        sorted(people, reverse=True),
        list(reversed(uses)),
        at,
        shuffled,
        default=default,  # type: ignore[arg-type]
    )
    assert again == d
    assert d.allowed is oracle(people, uses, at, grants, default)
    if d.grant is not None:
        assert d.grant in grants and f"(source: {d.grant.source})" in d.reason


def test_uses_constant_is_the_documented_list() -> None:
    assert USES == (
        "ai_generative_training",
        "ai_training",
        "ai_inference",
        "data_mining",
        "ai_input",
        "ai_index",
        "search",
        "likeness_face",
        "likeness_voice",
        "research",
        "commercial",
    )


def test_not_allowed_for_inference_forbids_retrieval_at_inference_but_not_the_reverse() -> None:
    forbidden = run([work("ai_inference", "notAllowed"), work("ai_input", "allowed")], ["ai_input"], "opt-out")
    assert not forbidden.allowed and "notAllowed for ai_input by work grant for ai_inference" in forbidden.reason
    assert run([work("ai_input", "notAllowed")], ["ai_inference"], "opt-out").allowed
    assert not run([work("search", "notAllowed")], ["search"], "opt-out").allowed
    assert run([work("ai_index", "allowed")], ["ai_index"], "opt-in").allowed
