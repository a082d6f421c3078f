"""Run a program under a unit's SystemCallFilter= and MemoryDenyWriteExecute=, without systemd.

    python -m tests.lib.sandbox UNIT -- PROGRAM ARGS...

systemd is not PID 1 where the tests run, so they emulate what the unit
would impose with the kernel's own mechanisms: the system-call allow list
(the unit's ``SystemCallFilter=`` lines, groups expanded by
``systemd-analyze syscall-filter``, everything else failing with EPERM as
``SystemCallErrorNumber=EPERM`` says) loaded with libseccomp, and
``prctl(PR_SET_MDWE)`` for ``MemoryDenyWriteExecute=yes`` (no mapping may
become writable and executable), and ``RestrictAddressFamilies=`` as systemd
implements it: ``socket()`` of any other family fails (EAFNOSUPPORT). Both are inherited by everything the
program starts (dnsmasq, the dhcp-script). It must run with no_new_privs
(setpriv's --no-new-privs before it): the kernel requires it for seccomp.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys

from tests.lib.units import directives

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
# systemd.exec(5): permitted whatever the filter says
ALWAYS = {"execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn"}


def syscall_groups() -> dict[str, list[str]]:
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not line.startswith(" ") and text.startswith("@"):
            current = groups.setdefault(text, [])
        elif current is not None:
            current.append(text)
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    result: set[str] = set()
    for name in names:
        if name.startswith("@"):
            result |= expand(groups.get(name, []), groups)
        else:
            result.add(name)
    return result


def allowed(unit: str) -> set[str]:
    """systemd's semantics: an allow list first, then each ~ line removes, others add."""
    groups = syscall_groups()
    allow: set[str] = set()
    for value in directives(unit, "SystemCallFilter"):
        deny = value.startswith("~")
        names = expand(value.lstrip("~").split(), groups)
        allow = allow - names if deny else allow | names
    return allow | ALWAYS


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def families(unit: str) -> list[int] | None:
    """The address family numbers the unit allows (None: no restriction)."""
    import socket

    values = " ".join(directives(unit, "RestrictAddressFamilies")).split()
    return [int(getattr(socket, name)) for name in values] if values else None


def apply(unit: str) -> None:
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_rule_add_exact.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, _ArgCmp
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(0x00050000 | errno.EPERM)  # SCMP_ACT_ERRNO(EPERM)
    allowed_families = families(unit)
    socket_nr = lib.seccomp_syscall_resolve_name(b"socket")
    for name in sorted(allowed(unit)):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number == socket_nr and allowed_families is not None:
            for family in allowed_families:
                cmp = _ArgCmp(0, SCMP_CMP_EQ, family, 0)
                if lib.seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, number, 1, cmp) != 0:
                    raise OSError(f"seccomp_rule_add(socket, family {family}) failed")
            continue
        # names of other architectures resolve to nothing (negative)
        if number >= 0 and lib.seccomp_rule_add(ctx, SCMP_ACT_ALLOW, number, 0) != 0:
            raise OSError(f"seccomp_rule_add({name}) failed")
    if lib.seccomp_load(ctx) != 0:
        raise OSError("seccomp_load failed (is no_new_privs set?)")
    if directives(unit, "MemoryDenyWriteExecute") == ["yes"]:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def main() -> None:
    unit, sep, *argv = sys.argv[1:]
    assert sep == "--" and argv, "usage: python -m tests.lib.sandbox UNIT -- PROGRAM ARGS..."
    apply(unit)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
