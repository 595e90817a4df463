"""Alembic environment: migrations run on the connection that ``init_store`` hands over."""

from __future__ import annotations

from alembic import context

from endcredits.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("endcredits migrations run through `endcredits init`, which supplies the connection")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
context.run_migrations()
