"""Parsing the agreement: every rate is exact text, every mistake is a ValidationError that names it."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from endcredits.errors import ValidationError
from endcredits.royalties import parse_agreement
from helpers_money import agreement_text

GOOD = agreement_text(pool_rate="0.30", rights_holder_share="1/3", payout_threshold="10.00")


def test_a_good_agreement_parses_exactly() -> None:
    ag = parse_agreement(GOOD)
    assert ag.pool_rate == Fraction(3, 10)
    assert ag.rights_holder_share == Fraction(1, 3)
    assert ag.lineage_pass_through == Fraction(1, 5)
    assert ag.baseline_share == 0
    assert ag.payout_threshold_microunits == 10 * 10**8
    assert ag.role_weights[("endcredits", "composer")] == 1
    assert ag.body == GOOD and len(ag.body_sha256) == 64


def _edit(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


BAD = [
    (
        "share above one",
        _edit('pool_rate = "0.30"', 'pool_rate = "1.5"'),
        "agreement pool_rate = 1.5 exceeds the whole (1)",
    ),
    (
        "rights share above one",
        _edit('rights_holder_share = "1/3"', 'rights_holder_share = "4/3"'),
        "agreement rights_holder_share = 4/3 exceeds the whole",
    ),
    (
        "unknown key",
        GOOD.replace("[role_weights]", 'pool_ratio = "0.3"\n[role_weights]'),
        "agreement has unknown keys ['pool_ratio']",
    ),
    (
        "float rate",
        _edit('pool_rate = "0.30"', "pool_rate = 0.30"),
        'agreement pool_rate must be quoted decimal text such as "0.25", got 0.3',
    ),
    (
        "float threshold",
        _edit('payout_threshold = "10.00"', "payout_threshold = 10.0"),
        "agreement payout_threshold must be quoted decimal text",
    ),
    ("missing key", _edit('currency = "EUR"\n', ""), "agreement is missing ['currency']"),
    ("missing role weights", GOOD[: GOOD.index("[role_weights]")], "agreement is missing ['role_weights']"),
    (
        "role without code",
        _edit('"endcredits:composer" = 1', '"composer" = 1'),
        "agreement role 'composer' must be written scheme:code",
    ),
    (
        "role with empty code",
        _edit('"endcredits:composer" = 1', '"endcredits:" = 1'),
        "agreement role 'endcredits:' must be written scheme:code",
    ),
    (
        "zero role weight",
        _edit('"endcredits:composer" = 1', '"endcredits:composer" = 0'),
        "agreement role weight for endcredits:composer must be an integer in 1..",
    ),
    (
        "float role weight",
        _edit('"endcredits:composer" = 1', '"endcredits:composer" = 1.5'),
        "agreement role weight for endcredits:composer must be an integer",
    ),
    (
        "zero pool rate",
        _edit('pool_rate = "0.30"', 'pool_rate = "0"'),
        "agreement pool_rate is 0: nobody would be paid",
    ),
    (
        "negative rate",
        _edit('lineage_pass_through = "0.20"', 'lineage_pass_through = "-0.2"'),
        "agreement lineage_pass_through '-0.2' is not a plain decimal or ratio",
    ),
    (
        "exponent rate",
        _edit('pool_rate = "0.30"', 'pool_rate = "3e-1"'),
        "agreement pool_rate '3e-1' is not a plain decimal",
    ),
    ("unknown currency", _edit('currency = "EUR"', 'currency = "eur"'), "unknown currency 'eur'"),
    ("version zero", _edit("version = 1", "version = 0"), "agreement version must be a positive integer, got 0"),
    (
        "too precise threshold",
        _edit('payout_threshold = "10.00"', 'payout_threshold = "0.000000001"'),
        "has 9 decimals; at most 8",
    ),
    (
        "negative influence rule",
        GOOD.replace("[role_weights]", 'negative_influence = "clip"\n[role_weights]'),
        "agreement negative_influence 'clip' is not supported",
    ),
    ("not TOML", GOOD + "pool_rate = \n", "agreement is not valid TOML"),
]


@pytest.mark.parametrize(("body", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_agreements_are_refused_with_a_useful_message(body: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        parse_agreement(body)


@pytest.mark.parametrize("role", ["endcredits:Lead Actor", "End Credits:composer", "endcredits:composer:extra"])
def test_role_names_follow_the_registry_rules(role: str) -> None:
    with pytest.raises(ValidationError, match="must be written scheme:code"):
        parse_agreement(_edit('"endcredits:composer" = 1', f'"{role}" = 1'))


def test_licence_terms_default_to_none_and_name_how_terms_apply() -> None:
    assert parse_agreement(GOOD).licence_terms == ()
    floored = parse_agreement(GOOD.replace("[role_weights]", 'licence_terms = ["output_floor"]\n[role_weights]'))
    assert floored.licence_terms == ("output_floor",)
    for value, message in (
        ("[1]", "agreement licence_terms must be a list of names"),
        ('["floor"]', "agreement licence_terms names 'floor', which is not one of output_floor"),
    ):
        with pytest.raises(ValidationError, match=re.escape(message)):
            parse_agreement(GOOD.replace("[role_weights]", f"licence_terms = {value}\n[role_weights]"))
