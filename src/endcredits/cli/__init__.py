"""The ``endcredits`` command line: ``endcredits [--data DIR] [--db URL] NOUN VERB``.

Every error endcredits raises on purpose prints one line (``error: ...``) and exits with status 1.
Commands whose output scripts read take ``--json``. Anything that moves money takes ``--dry-run`` and
prints its idempotency id.
"""

from endcredits.cli.app import app, main

__all__ = ["app", "main"]
