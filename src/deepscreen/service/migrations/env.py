"""Alembic environment: the service passes its open connection in (store.migrate), so no URL lives here."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
