"""SQLAlchemy models: networks, fixed and floating IPs, virtual interfaces, instances, services.

The schema follows nova's where nova's names are known to operators
(fixed_ips.allocated/leased/reserved, instance_uuid, virtual_interfaces), and
departs from it where nova had a bug: timestamps carry microseconds so that
"least recently used first" really orders addresses released within the same
second, and instance ids are never reused (a chain ``inst-N`` always means one
instance).
"""

from __future__ import annotations

import datetime
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime.datetime:
    """Naive UTC now (stored without zone on every backend)."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


# MariaDB's DATETIME drops fractions of a second unless asked for them.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# User data is bytes, served as given (migration 0003); MariaDB's BLOB stops
# at 65,535 bytes, one short of the 64 KiB novanet accepts.
UserData = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")


class Base(DeclarativeBase):
    pass


class Network(Base):
    __tablename__ = "networks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    label: Mapped[str] = mapped_column(String(255))
    cidr: Mapped[str] = mapped_column(String(43), unique=True)
    netmask: Mapped[str] = mapped_column(String(39))
    gateway: Mapped[str] = mapped_column(String(39))
    broadcast: Mapped[str] = mapped_column(String(39))
    dhcp_server: Mapped[str] = mapped_column(String(39))
    dhcp_start: Mapped[str] = mapped_column(String(39))
    dns1: Mapped[str | None] = mapped_column(String(39))
    dns2: Mapped[str | None] = mapped_column(String(39))
    # Not unique: `network create --num_networks N` puts N networks on one
    # bridge, as nova did (one dnsmasq serves them all).
    bridge: Mapped[str] = mapped_column(String(15))
    bridge_interface: Mapped[str | None] = mapped_column(String(15))
    multi_host: Mapped[bool] = mapped_column(Boolean, default=False)
    # The network host serving it (NULL: any); set with `network modify --host`.
    host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)
    project_id: Mapped[str | None] = mapped_column(String(255))
    # Lower first: the order in which networks hand out addresses (NULL last).
    priority: Mapped[int | None] = mapped_column(Integer)


class FixedIp(Base):
    __tablename__ = "fixed_ips"
    __table_args__ = (
        UniqueConstraint("address", name="uq_fixed_ips_address"),
        # The allocation query: free addresses of one network, least recently
        # used first. Free means instance_uuid IS NULL, which every backend can
        # use as an index equality, so the scan starts at the first candidate
        # whether the network has 10 or 60,000 allocated addresses.
        Index("ix_fixed_ips_pool", "network_id", "instance_uuid", "updated_at", "id"),
        Index("ix_fixed_ips_vif", "virtual_interface_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(39))
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"))
    virtual_interface_id: Mapped[int | None] = mapped_column(Integer)
    instance_uuid: Mapped[str | None] = mapped_column(String(36))
    # allocated: bound to a live VIF; leased: dnsmasq reported the lease;
    # reserved: never handed out (network, gateway, DHCP server, broadcast).
    allocated: Mapped[bool] = mapped_column(Boolean, default=False)
    leased: Mapped[bool] = mapped_column(Boolean, default=False)
    reserved: Mapped[bool] = mapped_column(Boolean, default=False)
    host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)


class VirtualInterface(Base):
    __tablename__ = "virtual_interfaces"
    __table_args__ = (
        UniqueConstraint("address", name="uq_virtual_interfaces_address"),
        Index("ix_virtual_interfaces_instance_uuid", "instance_uuid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    address: Mapped[str] = mapped_column(String(17))  # the MAC
    network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id", ondelete="SET NULL"))
    instance_uuid: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)


class Instance(Base):
    __tablename__ = "instances"
    # AUTOINCREMENT on SQLite: ids of deleted instances are never handed out
    # again, so a stale inst-N chain can never be mistaken for a new instance.
    __table_args__ = (
        Index("ix_instances_host", "host"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    display_name: Mapped[str] = mapped_column(String(255))
    hostname: Mapped[str] = mapped_column(String(63))
    host: Mapped[str] = mapped_column(String(255))
    vif_type: Mapped[str] = mapped_column(String(16), default="tap")
    vif_devname: Mapped[str | None] = mapped_column(String(15))
    # building -> active; deleting; error. Rows are deleted when the
    # instance is gone (ids stay unique through autoincrement).
    state: Mapped[str] = mapped_column(String(16), default="building")
    user_data: Mapped[bytes | None] = mapped_column(UserData)
    public_key: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)


class SecurityGroup(Base):
    """nova's security_groups (no project: novanet has one tenant); ``default`` always exists."""

    __tablename__ = "security_groups"
    __table_args__ = (UniqueConstraint("name", name="uq_security_groups_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)


class SecurityGroupRule(Base):
    """An ingress rule of ``parent_group_id``: from ``cidr`` or from members of ``group_id``."""

    __tablename__ = "security_group_rules"
    __table_args__ = (
        Index("ix_security_group_rules_parent", "parent_group_id"),
        Index("ix_security_group_rules_group", "group_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_group_id: Mapped[int] = mapped_column(
        ForeignKey("security_groups.id", ondelete="CASCADE")
    )
    protocol: Mapped[str] = mapped_column(String(5))
    from_port: Mapped[int] = mapped_column(Integer)
    to_port: Mapped[int] = mapped_column(Integer)
    cidr: Mapped[str | None] = mapped_column(String(43))
    # No cascade: a group some rule grants cannot be deleted.
    group_id: Mapped[int | None] = mapped_column(ForeignKey("security_groups.id"))
    created_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)


class SecurityGroupInstance(Base):
    """Membership; it goes with the instance's row."""

    __tablename__ = "security_group_instance_association"
    __table_args__ = (
        UniqueConstraint("security_group_id", "instance_uuid", name="uq_security_group_instance"),
        Index("ix_security_group_instance_uuid", "instance_uuid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    security_group_id: Mapped[int] = mapped_column(ForeignKey("security_groups.id"))
    instance_uuid: Mapped[str] = mapped_column(ForeignKey("instances.uuid", ondelete="CASCADE"))
    created_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)


class FloatingIp(Base):
    """nova's floating_ips: one row per address of a pool, mapped onto a fixed IP when associated.

    ``host`` is the network host holding the mapping (set while associated),
    ``auto_assigned`` marks an address taken by auto_assign_floating_ip or
    ``instance create --floating-ip``: it returns to the pool when the
    instance goes. ``updated_at`` is the association time while associated:
    the controller lists its rules in that order, so a new association only
    appends to the nat chains.
    """

    __tablename__ = "floating_ips"
    __table_args__ = (
        UniqueConstraint("address", name="uq_floating_ips_address"),
        Index("ix_floating_ips_fixed_ip_id", "fixed_ip_id"),
        Index("ix_floating_ips_pool", "pool"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(39))
    fixed_ip_id: Mapped[int | None] = mapped_column(ForeignKey("fixed_ips.id", ondelete="SET NULL"))
    pool: Mapped[str] = mapped_column(String(255))
    interface: Mapped[str] = mapped_column(String(15))
    host: Mapped[str | None] = mapped_column(String(255))
    auto_assigned: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)


class Service(Base):
    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("host", "binary", name="uq_services_host_binary"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(64))
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(Timestamp, default=utcnow)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def free_address(table: Table) -> ColumnElement[bool]:
    """The rows the pool may hand out: unowned, not reserved, not leased, no host."""
    return and_(
        table.c.instance_uuid.is_(None),
        table.c.reserved.is_(False),
        table.c.leased.is_(False),
        table.c.host.is_(None),
    )


# The allocation query's own index on PostgreSQL: only free rows, in the
# order they are handed out. It shrinks as the pool fills, so the 60,000th
# allocation reads the same few index entries as the first. Without it
# PostgreSQL did not treat "instance_uuid IS NULL" as an equality and sorted
# every free row of the network on each allocation (25 ms at 65,000 free
# rows). SQLite and MariaDB walk ix_fixed_ips_pool in order already (SQLite
# did not pick a partial index there, which only cost it writes).
_fixed_ips = _table(FixedIp)
Index(
    "ix_fixed_ips_free",
    _fixed_ips.c.network_id,
    _fixed_ips.c.updated_at,
    _fixed_ips.c.id,
    postgresql_where=free_address(_fixed_ips),
).ddl_if(dialect="postgresql")


# Core tables for the query modules (they use SQLAlchemy Core, not the ORM).
NETWORKS = _table(Network)
FIXED_IPS = _table(FixedIp)
VIFS = _table(VirtualInterface)
INSTANCES = _table(Instance)
SERVICES = _table(Service)
SECURITY_GROUPS = _table(SecurityGroup)
SECURITY_GROUP_RULES = _table(SecurityGroupRule)
SECURITY_GROUP_INSTANCES = _table(SecurityGroupInstance)
FLOATING_IPS = _table(FloatingIp)


def inserted_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])
