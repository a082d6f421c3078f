"""DNS labels for instance hostnames.

The hostname of an instance is what a user typed as its display name. It ends
up in dnsmasq's hostsfile (``MAC,NAME.DOMAIN,IP``), where a comma starts a new
field, a newline a new entry and ``#`` a comment, and in DHCP option 12 and
DNS answers. :func:`dns_label` turns any text into one RFC 1123 label, so
nothing a user types can add a line, a field or a tag to that file.
"""

from __future__ import annotations

import re
import unicodedata

MAX_LABEL = 63

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")


def is_dns_label(text: str) -> bool:
    """True if ``text`` is one lower-case RFC 1123 label (a-z, 0-9, inner '-', 1..63)."""
    return bool(_LABEL.fullmatch(text))


def dns_label(display_name: str, fallback: str) -> str:
    """Make ``display_name`` a valid DNS label, or return ``fallback``.

    Non-ASCII letters are transliterated where Unicode NFKD decomposes them
    (``é`` -> ``e``), other non-ASCII characters are dropped; every run of
    characters outside ``a-z0-9`` (spaces, commas, dots, ``_``, ``#``, ``/``,
    newlines...) becomes one ``-``; a label longer than 63 characters is
    shortened as nova shortened hostsfile names (its first two characters,
    ``-``, its last 60: the end of a name is what tells ``web-frontend-01``
    from ``web-frontend-02``); it has no leading or trailing ``-``. If
    nothing is left, ``fallback`` (e.g.
    ``instance-00000001``) is used; it must itself be a valid label.

    :raises ValueError: the fallback is needed and is not a valid label
    """
    ascii_text = (
        unicodedata.normalize("NFKD", display_name or "").encode("ascii", "ignore").decode("ascii")
    )
    label = _NOT_ALLOWED.sub("-", ascii_text.lower()).strip("-")
    if len(label) > MAX_LABEL:
        # nova's linux_net._host_dhcp (LP #1238910: dnsmasq takes 63
        # characters); the joint may make a '--', which the rule above folds.
        label = _NOT_ALLOWED.sub("-", label[:2] + "-" + label[-60:]).strip("-")
    if label:
        return label
    if not is_dns_label(fallback):
        raise ValueError(f"fallback hostname {fallback!r} is not a valid DNS label")
    return fallback


def hostname_candidates(wanted: str, fallback: str, count: int = 10) -> list[str]:
    """Hostnames to try, in order, for an instance that must not share one.

    dnsmasq answers DNS for every hostsfile name; two instances called
    ``web`` would make ``web.novalocal`` resolve to either. The first
    instance keeps the name; a later one gets its instance name
    (``instance-0000000a``, unique like its id), and only if someone named
    an instance exactly like that, ``instance-0000000a-2`` and so on.
    """
    names = [wanted, fallback] + [f"{fallback}-{n}" for n in range(2, count)]
    return [name for i, name in enumerate(names) if name not in names[:i]]


def first_free(candidates: list[str], taken: set[str]) -> str | None:
    return next((name for name in candidates if name not in taken), None)
