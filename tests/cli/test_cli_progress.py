"""The demo's progress lines are printed as text: a ``did:key:`` id or a bracket in a message stays as it is
(rich would otherwise turn ``:key:`` into an emoji and ``[b]`` into markup)."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from endcredits.cli.app import _with_step_bars


def test_progress_lines_keep_did_key_ids_and_brackets() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)

    def run(progress: Any, step: Any) -> str:
        progress("the operator trusts the guild did:key:z6MkgGzQu4; [b]not bold[/b]")
        step("training", 1, 2)
        return "done"

    assert _with_step_bars(console, run) == "done"
    assert "the operator trusts the guild did:key:z6MkgGzQu4; [b]not bold[/b]" in out.getvalue()
