"""novanet-metadata: the metadata API behind the controller's 169.254.169.254 DNAT."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

DESCRIPTION = "EC2/OpenStack metadata service for instances"


def main(argv: Sequence[str] | None = None) -> int:
    from novanet.cmd.pipes import run_filter

    return run_filter(lambda: _run(argv))


def _run(argv: Sequence[str] | None) -> int:
    # `import eventlet` warns on every start that it is in bugfix-only mode.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    from novanet.exception import NovanetError
    from novanet.service import args, green

    args.parse_args("novanet-metadata", DESCRIPTION, argv)  # --help/--version: before eventlet

    try:
        green.monkey_patch()  # first: locks and sockets made before it would not be green
    except NovanetError as exc:
        sys.stderr.write(f"novanet-metadata: error: {exc}\n")
        return exc.exit_code
    from novanet.metadata.daemon import build
    from novanet.service.daemon import run

    return run("novanet-metadata", DESCRIPTION, build, argv)


if __name__ == "__main__":
    sys.exit(main())
