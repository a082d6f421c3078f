"""A lab: the seed's datacenter in namespaces, as one object.

``Lab(name).up()`` builds it, ``Lab(name).down()`` removes everything it
made (also after a crash: every name and path derives from the lab id, and
every process left a pid file). Programs run in a node through
:meth:`Lab.execute` (captured) or :meth:`Lab.start_process` (background);
both enter the node's network namespace and its mount view (see
:mod:`novanet.lab.mounts`).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from novanet import exception
from novanet.lab import broker, fabric, guest, mounts, nodeconf, procs, relay, state
from novanet.lab.topology import Topology, lab_id_for, seed_topology
from novanet.linux import processutils

LOG = logging.getLogger(__name__)

FABRIC = "fabric"  # pseudo node: the fabric namespace (no mount view)


def default_base() -> str:
    return os.environ.get(state.BASE_ENV) or state.DEFAULT_BASE


class Lab:
    """One lab, identified by its name (the lab id is the validated name).

    :param name: lab name; namespaces are ``nl-<name>-<node>``
    :param base: directory of all labs (default $NOVANET_LAB_DIR or
        /run/novanet-lab); the lab's files go to ``<base>/<name>``
    """

    def __init__(self, name: str, base: str | None = None) -> None:
        try:
            self.lab_id = lab_id_for(name)
        except ValueError as exc:
            raise exception.UsageError(str(exc)) from None
        self.name = name
        # realpath: mountinfo shows /run, not a /var/run symlink, and the
        # mount views recognise the labs' handles by this prefix.
        self.base = os.path.realpath(base or default_base())
        self.paths = state.LabPaths(self.base, self.lab_id)
        self.topology: Topology = seed_topology(self.lab_id)
        self.launcher = procs.Launcher(self.paths, self.prefix)

    # -- building -----------------------------------------------------------

    def exists(self) -> bool:
        return os.path.isdir(self.paths.lab_dir) or any(
            fabric.netns_exists(ns) for ns in self.topology.all_netns()
        )

    @property
    def vhost(self) -> str:
        """The lab's RabbitMQ virtual host (every node's nova.conf names it)."""
        return broker.vhost_for(self.lab_id)

    def up(
        self,
        broker_port: int = relay.AMQP_PORT,
        *,
        vhost: bool = True,
        conf_extra: Mapping[str, str] | None = None,
    ) -> None:
        """Build the lab; on any failure remove what was made and re-raise.

        :param vhost: create the lab's RabbitMQ vhost (the daemons need it;
            a lab used only for its wires can skip the 1 s it costs)
        :param conf_extra: flags added to (or overriding) every node's nova.conf
        """
        os.makedirs(self.base, exist_ok=True)
        if any(fabric.netns_exists(ns) for ns in self.topology.all_netns()):
            raise exception.Conflict(
                f"lab {self.name} exists (run: novanet-lab down --name {self.name})"
            )
        try:
            os.mkdir(self.paths.lab_dir)
        except FileExistsError:
            raise exception.Conflict(
                f"lab {self.name} exists (run: novanet-lab down --name {self.name})"
            ) from None
        record = state.LabRecord(
            lab_id=self.lab_id,
            name=self.name,
            base=self.base,
            vhost=self.vhost if vhost else None,
            broker_port=broker_port,
        )
        state.save_lab(self.paths, record)  # first, so that down finds a half-built lab
        try:
            if vhost:
                broker.create_vhost(self.vhost)
            self._build(broker_port, conf_extra)
        except BaseException:
            LOG.exception("building lab %s failed; removing it", self.name)
            try:
                self.down()
            except exception.NovanetError as exc:
                # Keep the original error; what is left is listed, and the
                # lab's directory stays so that a later `down` finishes the job.
                LOG.error("%s", exc)
            raise
        record.ready = True
        state.save_lab(self.paths, record)

    def _build(self, broker_port: int, conf_extra: Mapping[str, str] | None) -> None:
        mounts.make_private_dir(self.paths.ns_dir)
        fabric.build(self.topology)
        for node in self.topology.nodes:
            for directory in (self.paths.logs_dir(node.name), self.paths.pids_dir(node.name)):
                os.makedirs(directory, exist_ok=True)
            mounts.create_uts(self.paths.uts_file(node.name), node.name)
            mounts.create_node_view(
                self.paths.mnt_file(node.name),
                fabric.netns_path(self.topology.netns(node.name)),
                self.paths.node_netns_dir(node.name),
                self.base,
            )
            if node.runs_novanet:
                self.write_nova_conf(node.name, conf_extra)
        guest.install_script(self.paths)
        relay.start(self.launcher, self.paths, self.topology, broker_port=broker_port)

    @property
    def broker_port(self) -> int:
        """Port of the machine's broker the lab relays to (127.0.0.1)."""
        record = state.load_lab(self.paths)
        return record.broker_port if record else relay.AMQP_PORT

    def write_nova_conf(self, node: str, extra: Mapping[str, str] | None = None) -> str:
        """(Re)write a node's nova.conf; ``extra`` adds or overrides flags."""
        path = self.paths.nova_conf(node)
        text = nodeconf.render_nova_conf(self.topology, node, self.paths, extra)
        # It names the broker's password (and, on a real controller, the
        # database's): readable by root only, like /etc/novanet/novanet.conf.
        state.write_text(path, text, mode=0o600)
        return path

    # -- running things in nodes ----------------------------------------------

    def _check_node(self, node: str) -> None:
        if node != FABRIC:
            try:
                self.topology.node(node)
            except KeyError as exc:
                raise exception.NotFound(str(exc.args[0])) from None

    def prefix(self, node: str | None) -> list[str]:
        """argv prefix that runs a command in ``node`` (None: on the machine)."""
        if node is None:
            return []
        self._check_node(node)
        if node == FABRIC:
            return ["nsenter", f"--net={fabric.netns_path(self.topology.fabric_netns)}", "--"]
        return mounts.enter(
            self.paths.mnt_file(node),
            fabric.netns_path(self.topology.netns(node)),
            self.paths.uts_file(node),
        )

    def command(self, node: str, argv: Sequence[str]) -> list[str]:
        """The full argv that runs ``argv`` in ``node``."""
        return [*self.prefix(node), *argv]

    def execute(self, node: str, argv: Sequence[str], **kwargs: Any) -> tuple[str, str]:
        """Run a command in a node and wait: processutils.execute semantics."""
        return processutils.execute(self.command(node, argv), **kwargs)

    def start_process(
        self, node: str | None, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> state.ProcessRecord:
        """Start a long-running program in ``node``; logs to the node's logs dir."""
        if node is not None:
            self._check_node(node)
        return self.launcher.start(node, name, argv, env)

    def stop_process(self, node: str | None, name: str, timeout: float = 5.0) -> bool:
        return self.launcher.stop(node, name, timeout=timeout)

    def restart_process(self, node: str | None, name: str) -> state.ProcessRecord:
        return self.launcher.restart(node, name)

    def kill_process(self, node: str | None, name: str, sig: int = signal.SIGKILL) -> bool:
        """Signal the program alone, SIGKILL by default (a crash, for fault tests)."""
        return self.launcher.kill(node, name, sig)

    def process(self, node: str | None, name: str) -> state.ProcessRecord | None:
        return self.launcher.get(node, name)

    def process_running(self, node: str | None, name: str) -> bool:
        return self.launcher.running(node, name)

    def instances(self, node: str) -> list[str]:
        """Network namespaces created inside a node (its private /run/netns)."""
        try:
            return sorted(os.listdir(self.paths.node_netns_dir(node)))
        except FileNotFoundError:
            return []

    def guest_dhcp(self, node: str, instance: str, **kwargs: Any) -> guest.GuestLease:
        """Run udhcpc once in an instance namespace of ``node``; the lease it applied."""
        return guest.dhcp(self.paths, self.prefix(node), node, instance, **kwargs)

    def start_guest_dhcp(self, node: str, instance: str, **kwargs: Any) -> guest.GuestLease:
        """Keep udhcpc running in an instance (renewals); wait for the first lease."""
        self._check_node(node)
        return guest.start_dhcp_client(self.launcher, self.paths, node, instance, **kwargs)

    # -- looking at it ---------------------------------------------------------

    def _process_nodes(self) -> list[str]:
        return [n.name for n in self.topology.nodes] + [FABRIC]

    def status(self) -> dict[str, Any]:
        record = state.load_lab(self.paths)
        processes = self.launcher.records(self._process_nodes())
        nodes = []
        for node in self.topology.nodes:
            netns = self.topology.netns(node.name)
            nodes.append(
                {
                    "name": node.name,
                    "role": node.role,
                    "netns": netns,
                    "present": fabric.netns_exists(netns),
                    "mount_view": mounts.is_mountpoint(self.paths.mnt_file(node.name)),
                    "interfaces": [i for i in fabric.describe(netns) if i["name"] != "lo"],
                    "instances": self.instances(node.name),
                    "processes": [procs.as_dict(p) for p in processes if p.node == node.name],
                    "dir": self.paths.node_dir(node.name),
                }
            )
        return {
            "lab": self.lab_id,
            "dir": self.paths.lab_dir,
            "ready": bool(record and record.ready),
            "nodes": nodes,
            "lab_processes": [procs.as_dict(p) for p in processes if p.node in (None, FABRIC)],
        }

    def log_files(self, node: str | None = None) -> list[str]:
        """Log files of one node, or of the whole lab (its own and every node's)."""
        if node is not None:
            self._check_node(node)
        wanted = [node] if node else [None, *self._process_nodes()]
        files = []
        for owner in wanted:
            directory = self.paths.logs_dir(owner)
            try:
                files += [os.path.join(directory, f) for f in sorted(os.listdir(directory))]
            except FileNotFoundError:
                pass
        return files

    # -- removing it -------------------------------------------------------------

    def down(self, timeout: float = 1.0) -> list[str]:
        """Remove everything the lab made; idempotent. Returns what was removed.

        Processes get SIGTERM and, ``timeout`` seconds later, SIGKILL: their
        namespaces go next, so a graceful stop would buy nothing (a novanet
        daemon takes about 5 s to stop gracefully).
        """
        removed: list[str] = []
        errors: list[str] = []
        nodes = [n.name for n in self.topology.nodes]
        record = state.load_lab(self.paths)
        # The directory is made first and removed last: without it nothing
        # else of the lab (vhost included) can exist. An unreadable record
        # says nothing, so the vhost is deleted to be sure.
        had_vhost = os.path.isdir(self.paths.lab_dir) and (record is None or bool(record.vhost))

        # A spawn helper orphaned by a crashed `up` could still start a
        # program after we looked: stop helpers first, then read pid files.
        lab_path = self.paths.lab_dir + "/"
        # One /proc scan each, not one per process (a set, built once).
        spawners = set(procs.processes_mentioning("novanet.lab.spawn"))
        helpers = [ident for ident in procs.processes_mentioning(lab_path) if ident in spawners]
        procs.terminate(helpers, group=False, timeout=1)
        recorded = [
            ident
            for _, _, pidfile in state.iter_pidfiles(self.paths, self._process_nodes())
            if (ident := state.read_pidfile(pidfile))
        ]
        removed += [f"process {pid}" for pid in procs.terminate(recorded, timeout=timeout)]

        # Programs the lab did not start itself (dnsmasq forked by a daemon,
        # a shell left by exec...) but that live in its namespaces. The
        # relay's per-connection forks went with its process group.
        net_ids = {
            i for ns in self.topology.all_netns() if (i := procs.ns_id(fabric.netns_path(ns)))
        }
        mnt_ids = set()
        for node in nodes:
            handle = self.paths.mnt_file(node)
            if mounts.is_mountpoint(handle) and (i := procs.ns_id(handle)):
                mnt_ids.add(i)
                net_ids |= mounts.instance_ns_ids(handle, self.instances(node))
        for _ in range(3):
            stray = procs.processes_in(net_ids, mnt_ids)
            if not stray:
                break
            removed += [f"process {pid}" for pid in procs.terminate(stray, group=False, timeout=2)]

        for node in nodes:
            handle = self.paths.mnt_file(node)
            if mounts.is_mountpoint(handle):
                removed += [f"{node}: netns {i}" for i in self.instances(node)]
                try:
                    mounts.release_node_view(handle)
                    removed.append(f"mount view {node}")
                except exception.ProcessExecutionError as exc:
                    errors.append(str(exc))
            try:
                mounts.unmount(self.paths.uts_file(node))
            except exception.ProcessExecutionError as exc:
                errors.append(str(exc))
        try:
            if mounts.unmount(self.paths.ns_dir):
                removed.append(f"mount {self.paths.ns_dir}")
        except exception.ProcessExecutionError as exc:
            errors.append(str(exc))
        if had_vhost:
            # After the processes: deleting a vhost closes its connections.
            # A killed `up` can leave its rabbitmqctl add_vhost running (an
            # orphan that would create the vhost after we deleted it): wait.
            for action in ("add_vhost", "set_permissions"):
                procs.wait_gone(procs.processes_with_args(action, self.vhost), timeout=30)
            try:
                if broker.delete_vhost(self.vhost):
                    removed.append(f"vhost {self.vhost}")
            except exception.NovanetError as exc:
                errors.append(str(exc))
        for ns in self.topology.all_netns():
            try:
                if fabric.remove_netns(ns):
                    removed.append(f"netns {ns}")
            except (OSError, exception.NovanetError) as exc:
                errors.append(f"netns {ns}: {exc}")
        if os.path.isdir(self.paths.lab_dir) and not errors:
            try:
                shutil.rmtree(self.paths.lab_dir)
                removed.append(self.paths.lab_dir)
            except OSError as exc:
                errors.append(f"{self.paths.lab_dir}: {exc}")
        try:
            os.rmdir(self.base)  # only if no other lab is left
        except OSError:
            pass
        if errors:
            raise exception.NovanetError(f"lab {self.name}: down incomplete: {'; '.join(errors)}")
        return removed


def all_lab_names(base: str | None = None) -> list[str]:
    """Names of the labs under ``base``.

    A lab's directory is created before anything else and removed last, so
    every lab that has namespaces has a directory. Namespace names alone are
    not used: a lab under another base directory (a test's) is not ours.
    """
    return state.list_lab_ids(os.path.realpath(base or default_base()))
