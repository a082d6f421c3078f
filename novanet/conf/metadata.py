"""The metadata service behind 169.254.169.254."""

from __future__ import annotations

from oslo_config import cfg

metadata_opts = [
    cfg.StrOpt(
        "metadata_host",
        default="$my_ip",
        help="Address the controller DNATs 169.254.169.254:80 to, and where "
        "novanet-metadata listens. A loopback address (127.0.0.1) cannot be a DNAT "
        "target: the controller then REDIRECTs to metadata_port on the address the "
        "request came in on, as nova did, and novanet-metadata listens on every "
        "address (0.0.0.0) unless metadata_listen names a non-loopback one.",
    ),
    cfg.PortOpt(
        "metadata_port",
        default=8775,
        help="TCP port of the metadata service.",
    ),
    cfg.StrOpt(
        "metadata_listen",
        default="$metadata_host",
        help="Address novanet-metadata binds (with metadata_port). Defaults to "
        "metadata_host, the DNAT target; 0.0.0.0 binds every address. The iptables "
        "ACCEPT rule is for metadata_host (for a loopback metadata_host: every "
        "local address, nova's '-m addrtype --dst-type LOCAL').",
    ),
    cfg.StrOpt(
        "vendordata_jsonfile_path",
        help="JSON file served to every instance as openstack/<version>/"
        "vendor_data.json (and under 'static' in vendor_data2.json), as nova's "
        "StaticJSON vendordata. Read once when novanet-metadata starts; a missing "
        "or malformed file stops it with an error. Unset: '{}'.",
    ),
    cfg.FloatOpt(
        "metadata_client_timeout",
        default=10.0,
        min=0.5,
        help="Seconds a client connection may take to send one complete request "
        "(request line and headers) and read the reply, counted from the accept or "
        "from the previous reply on a kept-alive connection. A slower client "
        "(slowloris: a byte a second) is disconnected.",
    ),
    cfg.IntOpt(
        "metadata_max_connections",
        default=1000,
        min=1,
        help="Client connections served at the same time (one green thread each). "
        "Further connections wait in the listen backlog until one ends. Keep it "
        "below the open-files limit of the process.",
    ),
    cfg.FloatOpt(
        "metadata_cache_ttl",
        default=0.0,
        min=0.0,
        max=60.0,
        help="Seconds an instance found by its source address is remembered "
        "(per address). 0 (default) asks the database on every request, so an "
        "instance created or deleted a moment ago is seen at once; see BENCHMARKS.md "
        "for what a cache gains.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(metadata_opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", metadata_opts)]
