"""limits.check_id and check_ids: one rule for every id, and the fast path for many ids agrees with it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from endcredits.errors import ValidationError
from endcredits.limits import ID_LENGTH_MAX, check_id, check_ids


@pytest.mark.parametrize("good", ["o1", "a b", "modèle-1", "x" * ID_LENGTH_MAX, "sha256:ab/cd", "日本"])
def test_printable_ids_pass(good: str) -> None:
    assert check_id(good, "id") == good


@pytest.mark.parametrize(
    "bad",
    ["", "x" * (ID_LENGTH_MAX + 1), "a\x00", "a\n", "a\t", "a\x7f", "a\x85", "a\u200b", "a\u202e", "a\ud800", " a",
     "a ", "a\u00a0", 7, None, b"a"],
    ids=repr,
)  # fmt: skip
def test_anything_else_is_refused_in_one_line(bad: object) -> None:
    with pytest.raises(ValidationError, match="^output id .* must be 1..200 printable characters") as info:
        check_id(bad, "output id")
    assert "\n" not in str(info.value) and "\x00" not in str(info.value)
    with pytest.raises(ValidationError, match="^output id"):
        check_ids(["fine", bad], "output id")


def test_spaces_can_be_refused_altogether() -> None:
    assert check_id("a b", "model id") == "a b"
    with pytest.raises(ValidationError, match="model id 'a b' must be .* without spaces"):
        check_id("a b", "model id", spaces=False)
    with pytest.raises(ValidationError, match="without spaces"):
        check_ids(["a", "a b"], "model id", spaces=False)


def test_a_long_value_is_cut_in_the_message() -> None:
    with pytest.raises(ValidationError) as info:
        check_id("x" * 10_000, "output id")
    assert len(str(info.value)) < 250 and "x..." in str(info.value)


@given(st.lists(st.text(max_size=8), max_size=6))
def test_check_ids_agrees_with_check_id_on_each(values: list[str]) -> None:
    def one_fails() -> bool:
        try:
            for v in values:
                check_id(v, "id")
        except ValidationError:
            return True
        return False

    expected = one_fails()
    try:
        check_ids(values, "id")
        failed = False
    except ValidationError:
        failed = True
    assert failed == expected
