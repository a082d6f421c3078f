"""novanet-manage: argument parsing, configuration, dispatch and error reporting.

Errors are one line on stderr: exit 1 for runtime errors (a conflict, a
missing object, an unreachable service), 2 for usage and configuration
errors. Every command runs in database transactions, so a refused command
writes nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TextIO

from oslo_config import cfg

from novanet import __version__
from novanet import conf as novanet_conf
from novanet.conf import loader
from novanet.exception import NovanetError
from novanet.manage import (
    db,
    diagnose,
    fixed,
    floating,
    instance,
    network,
    secgroup,
    service,
    trace,
)
from novanet.manage.context import Context
from novanet.rpc import context
from novanet.rpc.errors import first_line

PROG = "novanet-manage"
LOG = logging.getLogger(PROG)


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse prints the whole usage and exits; keep errors to one line
        # ("novanet-manage: error: network list: ...") and let main() return 2.
        where = self.prog[len(PROG) :].strip()
        raise _ArgumentError(f"{where}: {message}" if where else message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="Administer novanet's networks, addresses and instances."
    )
    loader.add_config_arguments(parser)
    parser.add_argument(
        "--format",
        dest="global_format",
        choices=["table", "json"],
        help="output format of list/show commands",
    )
    parser.add_argument("--debug", action="store_true", help="log details and tracebacks")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(
        dest="category", metavar="CATEGORY", required=True, parser_class=_Parser
    )
    for module in (db, network, fixed, floating, instance, secgroup, service, diagnose, trace):
        module.register(sub)
    return parser


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, conf: cfg.ConfigOpts | None = None
) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        return _fail(str(exc), 2)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format=f"{PROG}: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.debug:
        # The messaging libraries log each reconnection attempt as an error;
        # the command reports the outcome itself, in one line.
        for name in ("oslo.messaging", "oslo_messaging", "kombu", "amqp"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    conf = conf if conf is not None else cfg.CONF
    novanet_conf.register_opts(conf)
    # One request id per command: every daemon's log line of the work it
    # causes carries it (novanet.rpc.context).
    with context.bound() as request_id:
        LOG.debug("request id %s", request_id)
        return _run(args, conf, out)


def _run(args: argparse.Namespace, conf: cfg.ConfigOpts, out: TextIO | None) -> int:
    ctx: Context | None = None
    try:
        loader.load(conf, args.config_sources or [], prog=PROG)
        ctx = Context(conf, out)
        return int(args.func(ctx, args))
    except loader.ConfigError as exc:
        return _fail(str(exc), 2)
    except NovanetError as exc:
        return _fail(str(exc), exc.exit_code, args.debug)
    except BrokenPipeError:
        raise  # the reader went away (| head): cmd/pipes.py exits quietly
    except OSError as exc:
        return _fail(str(exc), 1, args.debug)
    except Exception as exc:
        if not type(exc).__module__.startswith("sqlalchemy"):
            raise
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return _fail(f"database error: {reason}", 1, args.debug)
    finally:
        if ctx is not None:
            ctx.close()


def _fail(message: str, code: int, debug: bool = False) -> int:
    if debug:
        LOG.exception("failed")
    # Errors are one line (novanet.rpc.errors makes remote ones so); a
    # multi-line message that slipped through still prints only its first.
    sys.stderr.write(f"{PROG}: error: {first_line(message) or 'failed'}\n")
    return code
