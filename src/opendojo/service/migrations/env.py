"""Alembic environment: migrations run on the connection the service hands over (see store.migrate)."""

from alembic import context

connection = context.config.attributes["connection"]
# render_as_batch: SQLite alters tables by copying them; PostgreSQL alters in place. Same scripts for both.
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
