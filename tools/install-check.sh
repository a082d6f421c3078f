#!/usr/bin/env bash
# `pip install .` into a fresh venv, then the issue's "done when" session with
# the seed's flagfile, from a directory outside the checkout.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/novanet-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$src" 2>&1 | grep -v "is ignored" >&2 || true
cat "$src/tests/data/seed/controller-nova.conf" > "$work/nova.conf"
echo "--state_path=$work/state" >> "$work/nova.conf"
cd "$work"
m() { "$work/venv/bin/novanet-manage" --flagfile "$work/nova.conf" "$@"; }
m db sync
m network create --label novanetwork --fixed_range_v4 10.0.0.0/24 --bridge br100 --bridge_interface eth2
m network list | grep -q '10.0.0.0/24 *10.0.0.1 *10.0.0.2'
m fixed list --format json | "$work/venv/bin/python" -c '
import json, sys
rows = json.load(sys.stdin)
assert [r["address"] for r in rows if r["reserved"]] == ["10.0.0.0", "10.0.0.1", "10.0.0.255"], rows[:3]
'
if m network create --label bad --fixed_range_v4 10.0.0.0/33 2>"$work/err"; then
    echo "install-check: a bad CIDR was accepted" >&2; exit 1
fi
[ "$(wc -l < "$work/err")" = 1 ]
for program in novanet-manage novanet-network novanet-compute novanet-metadata novanet-lab; do
    "$work/venv/bin/$program" --help >/dev/null
done
# dnsmasq's script: "old" in the shell, everything else in Python
"$work/venv/bin/novanet-dhcpbridge" old fa:16:3e:00:00:01 10.0.0.2
if "$work/venv/bin/novanet-dhcpbridge" add garbage 10.0.0.2 2>/dev/null; then
    echo "install-check: novanet-dhcpbridge accepted garbage" >&2; exit 1
fi
echo "install-check: ok (pip install . in a fresh venv, seed flow, bad input refused)"
