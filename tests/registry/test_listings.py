"""The registry's listings the edges show: bounded, ordered, with the total beside; both backends."""

from __future__ import annotations

import pytest

from endcredits.errors import ValidationError
from endcredits.limits import LIST_ROWS_MAX
from endcredits.registry.records import WorkIn, add_works, check_list_limit, people_list, verify_person, works_list
from endcredits.store.engine import Store
from helpers_money import people


def test_people_and_works_listings_are_bounded_and_ordered(store: Store) -> None:
    a, b, c = people(store, "a", "b", "c", verified=False)
    with store.write() as conn:
        verify_person(conn, b, verified_by="guild")
        ids = [add_works(conn, [WorkIn(f"work {i}".encode(), f"W{i}", "text")])[0] for i in range(3)]
    with store.read() as conn:
        total, first_two = people_list(conn, limit=2)
        assert total == 3 and [(p.person_id, p.handle, p.verified) for p in first_two] == [
            (a, "a", False),
            (b, "b", True),
        ]
        total, newest = works_list(conn, limit=2)
        assert total == 3 and [w.work_id for w in newest] == [ids[2], ids[1]]  # most recent first
        assert newest[0].title == "W2" and newest[0].kind == "text" and newest[0].source is None
        assert people_list(conn, limit=LIST_ROWS_MAX)[1][-1].person_id == c


@pytest.mark.parametrize("limit", [0, -1, LIST_ROWS_MAX + 1, True, 1.5])
def test_a_listing_refuses_a_limit_outside_its_bound(limit: object) -> None:
    with pytest.raises(ValidationError, match="a listing returns 1..LIST_ROWS_MAX=100000 rows"):
        check_list_limit(limit)  # type: ignore[arg-type]
