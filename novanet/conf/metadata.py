"""The metadata service behind 169.254.169.254."""

from __future__ import annotations

from oslo_config import cfg

metadata_opts = [
    cfg.StrOpt(
        "metadata_host",
        default="$my_ip",
        help="Address the controller DNATs 169.254.169.254:80 to, and where "
        "novanet-metadata listens.",
    ),
    cfg.PortOpt(
        "metadata_port",
        default=8775,
        help="TCP port of the metadata service.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(metadata_opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", metadata_opts)]
