"""The SQL database (controller only: compute agents hold no credentials)."""

from __future__ import annotations

from oslo_config import cfg

database_opts = [
    cfg.StrOpt(
        "connection",
        default="sqlite:///$state_path/novanet.sqlite",
        secret=True,
        deprecated_opts=[cfg.DeprecatedOpt("sql_connection", group="DEFAULT")],
        help="SQLAlchemy URL of the database. SQLite (the default; WAL mode), MariaDB "
        "(mysql+pymysql://user:pass@host/db) and PostgreSQL "
        "(postgresql+psycopg://user:pass@host/db) are supported. Legacy "
        "'mysql://' and 'postgresql://' URLs get the pymysql and psycopg drivers. "
        "nova's sql_connection flag is read as this option.",
    ),
    cfg.IntOpt(
        "busy_timeout",
        default=30,
        min=0,
        help="Seconds a SQLite connection waits for a lock held by another process "
        "(the daemon, novanet-manage and the dhcp-script share the file).",
    ),
    cfg.IntOpt(
        "max_retries",
        default=10,
        min=1,
        help="Attempts of a fixed IP allocation that keeps losing the compare-and-swap "
        "to concurrent allocators before it gives up.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    # A group object per ConfigOpts: oslo.config keeps overrides on the group,
    # so a shared module-level OptGroup would leak them between instances.
    group = cfg.OptGroup("database", title="SQL database")
    conf.register_group(group)
    conf.register_opts(database_opts, group=group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("database", database_opts)]
