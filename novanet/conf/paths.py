"""Host identity and filesystem paths."""

from __future__ import annotations

import socket
import sys
import sysconfig

from oslo_config import cfg


def _default_bindir() -> str:
    # The scripts directory of the running interpreter: a venv's bin/ when
    # novanet is installed in one, /usr/local/bin for a system install.
    return sysconfig.get_path("scripts") or sys.prefix + "/bin"


path_opts = [
    cfg.StrOpt(
        "state_path",
        default="/var/lib/novanet",
        help="Top-level directory for novanet's state: the default SQLite database, "
        "the dnsmasq files under networks_path and lock files. Must be on a local "
        "filesystem (SQLite locking does not work over NFS).",
    ),
    cfg.StrOpt(
        "networks_path",
        default="$state_path/networks",
        help="Directory of the per-bridge dnsmasq files: nova-<bridge>.conf (the "
        "hostsfile), nova-<bridge>.pid and the hostsdir used for large networks.",
    ),
    cfg.StrOpt(
        "lock_path",
        default="$state_path/lock",
        help="Directory for inter-process lock files (bridge and gateway changes, "
        "iptables updates).",
    ),
    cfg.StrOpt(
        "bindir",
        default=_default_bindir(),
        sample_default="<the scripts directory of the Python running novanet>",
        help="Directory where the novanet programs are installed; used to build the "
        "default path of novanet-dhcpbridge.",
    ),
]

host_opts = [
    cfg.StrOpt(
        "host",
        default=socket.gethostname(),
        sample_default="<the machine's hostname>",
        help="Name of this node. Compute agents are addressed by it (RPC server "
        "name on topic 'compute') and instances are placed with "
        "'novanet-manage instance create --host'. Must match the name used there.",
    ),
    cfg.IPOpt(
        "my_ip",
        version=4,
        sample_default="<the IPv4 address of the interface holding the default route>",
        help="IPv4 address of this host on the management network. Default: the "
        "primary address of the interface with the default route, or 127.0.0.1 if "
        "there is none. routing_source_ip and metadata_host default to it.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(path_opts)
    conf.register_opts(host_opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", path_opts + host_opts)]
