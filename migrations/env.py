"""Alembic environment: the URL, and the models' metadata for autogenerate, both from
app.db.alembic_config(). Nothing here or in versions/ imports the app: a migration must
keep working however the app's code changes later."""

from alembic import context
from sqlalchemy import create_engine, inspect, pool, text
from sqlalchemy.types import TypeDecorator

config = context.config
target_metadata = config.attributes.get("target_metadata")


def _render_item(type_, obj, _autogen_context):  # type: ignore[no-untyped-def]
    """Autogenerate writes a column of an app type as the type it stores
    (UTCDateTime -> sa.DateTime(timezone=True)), so a new migration imports nothing."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
        with engine.connect() as connection:
            _run(connection)
    else:
        _run(connectable)


# Until 0005, the revisions 0002_queue, 0003_labeling and 0005_exports each revised 0001, so
# a database migrated then records three heads. They now form one line in that order; such
# a database is at the newest of the three.
_FORMER_HEADS = ("0002_queue", "0003_labeling", "0005_exports")


def _collapse_former_heads(connection) -> None:  # type: ignore[no-untyped-def]
    if "alembic_version" in inspect(connection).get_table_names():
        rows = {r[0] for r in connection.execute(text("SELECT version_num FROM alembic_version"))}
        if len(rows) > 1 and rows <= set(_FORMER_HEADS):
            newest = max(rows, key=_FORMER_HEADS.index)
            connection.execute(text("DELETE FROM alembic_version WHERE version_num != :v"),
                               {"v": newest})
    # End the transaction these reads began: alembic commits only a transaction it began.
    connection.commit()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    _collapse_former_heads(connection)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
