"""RabbitMQ and the legacy rabbit_* flags."""

from __future__ import annotations

from urllib.parse import quote

from oslo_config import cfg

DEFAULT_TRANSPORT_URL = "rabbit://guest:guest@127.0.0.1:5672/"

# transport_url itself belongs to oslo.messaging, which registers it on the
# same ConfigOpts (registering a different definition would clash); its
# documented default there is 'rabbit://', i.e. guest:guest@localhost:5672.
legacy_rabbit_opts = [
    cfg.StrOpt(
        "rabbit_host",
        help="Legacy nova flag: RabbitMQ host. Used to build transport_url when "
        "transport_url is not set.",
    ),
    cfg.PortOpt(
        "rabbit_port",
        help="Legacy nova flag: RabbitMQ port (default 5672).",
    ),
    cfg.StrOpt(
        "rabbit_userid",
        help="Legacy nova flag: RabbitMQ user (default guest).",
    ),
    cfg.StrOpt(
        "rabbit_password",
        secret=True,
        help="Legacy nova flag: RabbitMQ password (default guest).",
    ),
    cfg.StrOpt(
        "rabbit_virtual_host",
        help="Legacy nova flag: RabbitMQ virtual host (default /).",
    ),
]

rpc_opts = [
    cfg.IntOpt(
        "rpc_connect_timeout",
        default=10,
        min=1,
        help="Seconds novanet-manage waits for the network service to answer before "
        "it reports the service as unreachable.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(legacy_rabbit_opts)
    conf.register_opts(rpc_opts)


# Documentation only (the sample config): the option itself is oslo.messaging's.
_transport_url_doc = cfg.StrOpt(
    "transport_url",
    default=DEFAULT_TRANSPORT_URL,
    secret=True,
    help="oslo.messaging URL of the RabbitMQ broker, "
    "rabbit://USER:PASS@HOST:PORT/VHOST. Unset: built from the legacy rabbit_* "
    "flags if any is set, else rabbit://guest:guest@127.0.0.1:5672/.",
)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", [_transport_url_doc] + legacy_rabbit_opts + rpc_opts)]


def legacy_transport_url(conf: cfg.ConfigOpts) -> str | None:
    """The transport URL the rabbit_* flags describe, or None if none is set."""
    values = [
        conf.rabbit_host,
        conf.rabbit_port,
        conf.rabbit_userid,
        conf.rabbit_password,
        conf.rabbit_virtual_host,
    ]
    if all(v is None for v in values):
        return None
    user = quote(conf.rabbit_userid or "guest", safe="")
    password = quote(conf.rabbit_password or "guest", safe="")
    host = conf.rabbit_host or "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = conf.rabbit_port or 5672
    vhost = conf.rabbit_virtual_host or "/"
    vhost_part = "" if vhost == "/" else quote(vhost, safe="")
    return f"rabbit://{user}:{password}@{host}:{port}/{vhost_part}"
