"""Loading configuration: INI files and nova's legacy flagfiles.

Every program takes ``--config-file PATH`` (INI, oslo.config), ``--flagfile
PATH`` (nova's format: one ``--name=value`` per line) and ``--config-dir DIR``
(its ``*.conf`` files in sorted order, where the switch stands, as oslo reads
it), in any order and repeated; later files win. A ``--config-file`` whose first
meaningful line starts with ``--`` is read as a flagfile, so the seed's
nova.conf works with either switch.

Flagfiles are translated into a private INI file that oslo.config parses in
its place; we keep where every value came from, so that a bad value is
reported with the file and line the operator wrote, not the translation.

Every option is read once after parsing: a bad value anywhere fails the
program at start with exit code 2 and one line naming option, value and
file:line, instead of a traceback the first time the option is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence

from oslo_config import cfg, types

from novanet.conf import hostinfo

LOG = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = "/etc/novanet/novanet.conf"
DEFAULT_CONFIG_DIR = "/etc/novanet/novanet.conf.d"

# Legacy flag name -> (group, name) of the option that replaced it.
ALIASES: dict[str, tuple[str, str]] = {
    "sql_connection": ("database", "connection"),
}

# Options that oslo.messaging registers on the same ConfigOpts when the RPC
# transport is built; they are known, not "unknown legacy flags".
FOREIGN_KNOWN = frozenset(
    {
        "transport_url",
        "rpc_response_timeout",
        "control_exchange",
        "executor_thread_pool_size",
        "rpc_ping_enabled",
        "config_file",
        "config_dir",
    }
)

_INI_KEY = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*[=:]")
_INI_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")


class ConfigError(Exception):
    """A configuration problem the operator must fix; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Source:
    """One configuration file given on the command line, in order."""

    kind: str  # "config" (INI, or a flagfile recognised by content), "flag" or "dir"
    path: str


@dataclasses.dataclass
class Origin:
    path: str
    line: int
    raw: str


class _Loaded:
    """What was read: translated files and where each value came from."""

    def __init__(self) -> None:
        self.ini_files: list[str] = []
        # (group, name) -> origin of the value that wins (the last one)
        self.origins: dict[tuple[str, str], Origin] = {}
        self.unknown: list[tuple[str, Origin]] = []
        self.tmpdir: str | None = None

    def translated_dir(self) -> str:
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix="novanet-conf-")
        return self.tmpdir


def is_flagfile(path: str) -> bool:
    """True when the file's first meaningful line starts with ``--``."""
    for line in _read_lines(path):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        return text.startswith("--")
    return False


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"configuration file {path} is a directory") from None
    except PermissionError:
        raise ConfigError(
            f"configuration file {path} is not readable (permission denied)"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not UTF-8 text ({exc.reason})") from None


def expand_dirs(sources: Iterable[Source]) -> list[Source]:
    """``dir`` sources replaced by their ``*.conf`` files, sorted (oslo's --config-dir)."""
    files: list[Source] = []
    for source in sources:
        if source.kind == "dir":
            try:
                names = sorted(n for n in os.listdir(source.path) if n.endswith(".conf"))
            except OSError as exc:
                raise ConfigError(f"config directory {source.path}: {exc.strerror}") from None
            files += [Source("config", os.path.join(source.path, name)) for name in names]
        else:
            files.append(source)
    return files


def _known_opts(conf: cfg.ConfigOpts) -> dict[tuple[str, str], cfg.Opt]:
    known: dict[tuple[str, str], cfg.Opt] = {}
    for name, info in conf._opts.items():  # noqa: SLF001 - oslo offers no public walk
        known[("DEFAULT", name)] = info["opt"]
    for group_name in conf._groups:  # noqa: SLF001
        group = conf._get_group(group_name)  # noqa: SLF001
        for name, info in group._opts.items():  # noqa: SLF001
            known[(group_name, name)] = info["opt"]
    return known


def _deprecated_lookup(
    known: dict[tuple[str, str], cfg.Opt],
) -> dict[tuple[str, str], tuple[str, str]]:
    """(group, legacy name) -> (group, name) for every deprecated spelling."""
    table: dict[tuple[str, str], tuple[str, str]] = {}
    for (group, name), opt in known.items():
        for dep in opt.deprecated_opts:
            dep_group = dep.group or group
            table[(dep_group, (dep.name or name).replace("-", "_"))] = (group, name)
    for legacy, target in ALIASES.items():
        table[("DEFAULT", legacy)] = target
    return table


def _parse_flagfile(
    path: str,
    conf: cfg.ConfigOpts,
    loaded: _Loaded,
    entries: list[tuple[str, str, str, Origin]],
    seen: tuple[str, ...] = (),
) -> None:
    """Collect (group, name, value, origin) from a flagfile, following --flagfile."""
    real = os.path.realpath(path)
    if real in seen:
        raise ConfigError(f"flagfile {path} includes itself (through {' -> '.join(seen)})")
    known = _known_opts(conf)
    deprecated = _deprecated_lookup(known)
    for number, line in enumerate(_read_lines(path), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not text.startswith("--") or len(text) < 3:
            raise ConfigError(
                f"{path}:{number}: expected '--name=value' in a flagfile, found {text!r}"
            )
        body = text[2:]
        name, has_value, value = body.partition("=")
        name = name.strip().replace("-", "_")
        value = value.strip()
        origin = Origin(path, number, value if has_value else "")
        if name == "flagfile":
            if not value:
                raise ConfigError(f"{path}:{number}: --flagfile needs a path")
            nested = value if os.path.isabs(value) else os.path.join(os.path.dirname(path), value)
            _parse_flagfile(nested, conf, loaded, entries, seen + (real,))
            continue
        target = deprecated.get(("DEFAULT", name), ("DEFAULT", name))
        opt = known.get(target)
        if opt is None and not has_value and name.startswith("no"):
            # gflags spelling of a false boolean: --nomulti_host
            negated = known.get(("DEFAULT", name[2:]))
            if isinstance(getattr(negated, "type", None), types.Boolean):
                target, opt, value, has_value = ("DEFAULT", name[2:]), negated, "false", "="
                origin = Origin(path, number, "false")
        if opt is None:
            if name in FOREIGN_KNOWN:
                entries.append(("DEFAULT", name, value, origin))
            else:
                loaded.unknown.append((name, origin))
            continue
        if not has_value:
            if isinstance(opt.type, types.Boolean):
                value = "true"
                origin = Origin(path, number, "true")
            else:
                raise ConfigError(f"{path}:{number}: option {name} needs a value (--{name}=VALUE)")
        entries.append((target[0], target[1], value, origin))


def _translate_flagfile(path: str, conf: cfg.ConfigOpts, loaded: _Loaded) -> str:
    entries: list[tuple[str, str, str, Origin]] = []
    _parse_flagfile(path, conf, loaded, entries)
    known = _known_opts(conf)
    sections: dict[str, list[str]] = {}
    for group, name, value, origin in entries:
        opt = known.get((group, name))
        if opt is not None and not getattr(opt, "multi", False):
            # Only the last occurrence counts; keep the file small and honest.
            sections.setdefault(group, [])
            sections[group] = [ln for ln in sections[group] if not ln.startswith(name + " = ")]
        sections.setdefault(group, []).append(f"{name} = {value}")
        loaded.origins[(group, name)] = origin
    target = os.path.join(loaded.translated_dir(), f"{len(loaded.ini_files):02d}.conf")
    with open(target, "w", encoding="utf-8") as handle:
        for group, lines in sections.items():
            handle.write(f"[{group}]\n")
            handle.write("".join(line + "\n" for line in lines))
    return target


def _scan_ini(path: str, conf: cfg.ConfigOpts, loaded: _Loaded) -> None:
    """Record value origins of an INI file and its unknown DEFAULT keys."""
    known = _known_opts(conf)
    deprecated = _deprecated_lookup(known)
    section = None
    for number, line in enumerate(_read_lines(path), start=1):
        header = _INI_SECTION.match(line)
        if header:
            section = header.group(1).strip()
            continue
        match = _INI_KEY.match(line)
        if not match or section is None or line[:1] in (" ", "\t", "#", ";"):
            continue
        name = match.group(1).replace("-", "_")
        raw = line.split(match.group(0)[-1], 1)[1].strip()
        key = deprecated.get((section, name), (section, name))
        loaded.origins[key] = Origin(path, number, raw)
        if section == "DEFAULT" and key not in known and name not in FOREIGN_KNOWN:
            loaded.unknown.append((name, Origin(path, number, raw)))


def _expected(opt: cfg.Opt) -> str:
    kind = opt.type
    if isinstance(kind, types.Integer):
        bounds = []
        if kind.min is not None:
            bounds.append(f">= {kind.min}")
        if kind.max is not None:
            bounds.append(f"<= {kind.max}")
        return "an integer" + (" " + " and ".join(bounds) if bounds else "")
    if isinstance(kind, types.Float):
        return "a number"
    if isinstance(kind, types.Boolean):
        return "true or false"
    if isinstance(kind, types.IPAddress):
        return "an IPv4 address"
    if isinstance(kind, types.String) and kind.choices:
        return "one of " + ", ".join(str(c) for c in kind.choices)
    return ""


def _value_error(opt: cfg.Opt, origin: Origin | None, exc: Exception) -> ConfigError:
    reason = str(exc)
    marker = "is not valid: "
    if marker in reason:
        reason = reason.split(marker, 1)[1]
    if origin is not None:
        try:
            opt.type(origin.raw)
        except ValueError as direct:
            reason = str(direct)
        except Exception:  # noqa: BLE001 - fall back to oslo's wording
            pass
        expected = _expected(opt)
        if isinstance(opt.type, (types.Integer, types.Float, types.Boolean)) or (
            isinstance(opt.type, types.String) and opt.type.choices
        ):
            reason = f"expected {expected}"
        return ConfigError(
            f"invalid value {origin.raw!r} for option {opt.dest}: {reason} "
            f"(at {origin.path}:{origin.line})"
        )
    return ConfigError(f"invalid value for option {opt.dest}: {reason}")


def _validate(conf: cfg.ConfigOpts, loaded: _Loaded, tmp_to_origin: dict[str, str]) -> None:
    for (group, name), opt in _known_opts(conf).items():
        try:
            if group == "DEFAULT":
                getattr(conf, opt.dest)
            else:
                getattr(getattr(conf, group), opt.dest)
        except (ValueError, cfg.ConfigFileValueError, cfg.ConfigSourceValueError) as exc:
            raise _value_error(opt, loaded.origins.get((group, name)), exc) from None
        except cfg.TemplateSubstitutionError as exc:
            origin = loaded.origins.get((group, name))
            where = f" (at {origin.path}:{origin.line})" if origin else ""
            raise ConfigError(f"option {name}: {exc}{where}") from None


def load(
    conf: cfg.ConfigOpts,
    sources: Sequence[Source],
    prog: str | None = None,
    default_files: Iterable[str] = (DEFAULT_CONFIG_FILE, DEFAULT_CONFIG_DIR),
) -> list[Source]:
    """Parse ``sources`` into ``conf`` (options must be registered already).

    Returns the files read, in order (the default file when none was given).
    Raises :class:`ConfigError`
    with a one-line message on any problem; nothing else is changed then.
    """
    files = list(sources)
    if not files:
        kinds = ((os.path.isdir(path), path) for path in default_files if os.path.exists(path))
        files = [Source("dir" if is_dir else "config", path) for is_dir, path in kinds]
    loaded = _Loaded()
    tmp_to_origin: dict[str, str] = {}
    try:
        for source in expand_dirs(files):
            if source.kind == "flag" or is_flagfile(source.path):
                ini = _translate_flagfile(source.path, conf, loaded)
                tmp_to_origin[ini] = source.path
            else:
                _read_lines(source.path)  # clear errors for missing/unreadable files
                _scan_ini(source.path, conf, loaded)
                ini = source.path
            loaded.ini_files.append(ini)
        if "my_ip" in conf:
            conf.set_default("my_ip", hostinfo.default_ipv4())
        args: list[str] = []
        for ini in loaded.ini_files:
            args += ["--config-file", ini]
        try:
            conf(args=args, project="novanet", prog=prog, default_config_files=[], use_env=False)
        except cfg.ConfigFilesNotFoundError as exc:
            raise ConfigError(str(exc)) from None
        except cfg.ConfigFileParseError as exc:
            path = tmp_to_origin.get(exc.config_file, exc.config_file)
            raise ConfigError(f"cannot parse {path}: {exc.msg}") from None
        except cfg.Error as exc:
            raise ConfigError(str(exc).splitlines()[0]) from None
        _validate(conf, loaded, tmp_to_origin)
    finally:
        if loaded.tmpdir is not None:
            shutil.rmtree(loaded.tmpdir, ignore_errors=True)
    if loaded.unknown:
        names = ", ".join(
            f"{name} ({origin.path}:{origin.line})" for name, origin in loaded.unknown
        )
        LOG.warning("ignoring flags novanet does not know: %s", names)
    return files


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config-file``, ``--flagfile`` and ``--config-dir`` (repeatable, order kept)."""

    class _Append(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
            current = list(getattr(namespace, "config_sources", None) or [])
            current.append(Source(self.const, values))
            namespace.config_sources = current

    file_help = f"INI file or nova flagfile (default: {DEFAULT_CONFIG_FILE} if it exists)"
    dir_help = f"its *.conf files, sorted, read here (default: {DEFAULT_CONFIG_DIR} if it exists)"
    for flag, kind, metavar, text in (
        ("--config-file", "config", "PATH", file_help + "; repeatable, later files win"),
        ("--flagfile", "flag", "PATH", "nova-style flagfile (--name=value lines); repeatable"),
        ("--config-dir", "dir", "DIR", dir_help + "; repeatable"),
    ):
        parser.add_argument(
            flag, action=_Append, const=kind, dest="config_sources", metavar=metavar, help=text
        )
