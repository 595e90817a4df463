"""The ``endcredits`` command line: ``endcredits [--data DIR] [--db URL] NOUN VERB``.

Every error endcredits raises on purpose prints one line (``error: ...``) and exits with status 1.
Every command that creates or reads something takes ``--json`` and prints one JSON object, amounts as
integer microunits (``tests/cli/test_cli_json.py`` names the few without it, and why). Anything that moves
money takes ``--dry-run`` and prints its idempotency id.
"""

from endcredits.cli.app import app, main

__all__ = ["app", "main"]
