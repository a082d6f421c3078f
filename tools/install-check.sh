#!/usr/bin/env bash
# `pip install .` into a fresh venv, then the issue's "done when" session with
# the seed's flagfile, from a directory outside the checkout; then the
# packaging promises: Python >= 3.11 enforced, LICENSE shipped, database
# drivers as extras, quiet exit into a closed pipe, --config-dir.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/novanet-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "install-check: $*" >&2; exit 1; }
python3 -m venv "$work/venv"
# A current pip, as ./run setup uses: pip 23.2 (Debian 12's ensurepip) does not
# check Requires-Python of a wheel file given with --python-version.
"$work/venv/bin/pip" install --quiet --upgrade pip >/dev/null 2>&1 || true
"$work/venv/bin/pip" install --quiet "$src" 2>&1 | grep -v "is ignored" >&2 || true
cat "$src/tests/data/seed/controller-nova.conf" > "$work/nova.conf"
echo "--state_path=$work/state" >> "$work/nova.conf"
cd "$work"
m() { "$work/venv/bin/novanet-manage" --flagfile "$work/nova.conf" "$@"; }
m db sync
m network create --label novanetwork --fixed_range_v4 10.0.0.0/24 --bridge br100 --bridge_interface eth2
m network list --format json | "$work/venv/bin/python" -c '
import json, sys
(net,) = json.load(sys.stdin)
assert (net["ipv4"], net["start_address"], net["dns1"]) == ("10.0.0.0/24", "10.0.0.2", "8.8.4.4"), net
'
m fixed list --format json | "$work/venv/bin/python" -c '
import json, sys
rows = json.load(sys.stdin)
assert [r["address"] for r in rows if r["reserved"]] == ["10.0.0.0", "10.0.0.1", "10.0.0.255"], rows[:3]
'
if m network create --label bad --fixed_range_v4 10.0.0.0/33 2>"$work/err"; then
    fail "a bad CIDR was accepted"
fi
[ "$(wc -l < "$work/err")" = 1 ]
for program in novanet-manage novanet-network novanet-compute novanet-metadata novanet-lab; do
    "$work/venv/bin/$program" --help >/dev/null
done
# dnsmasq's script: "old" in the shell, everything else in Python
"$work/venv/bin/novanet-dhcpbridge" old fa:16:3e:00:00:01 10.0.0.2
if "$work/venv/bin/novanet-dhcpbridge" add garbage 10.0.0.2 2>/dev/null; then
    fail "novanet-dhcpbridge accepted garbage"
fi

# A reader that stops early (| head -1): no "Broken pipe" error, and the exit
# status of a Unix filter killed by SIGPIPE (141), for every program. 4,096
# more rows: more than a pipe holds (64 KiB), so head exits while we write.
m network create --label more --fixed_range_v4 10.1.0.0/20 --bridge br101 >/dev/null
set +o pipefail
m fixed list 2>"$work/err" | head -1 >/dev/null
status=${PIPESTATUS[0]}
set -o pipefail
[ "$status" = 141 ] || fail "novanet-manage fixed list | head -1 exited $status"
[ ! -s "$work/err" ] || fail "novanet-manage into a closed pipe said: $(cat "$work/err")"
for program in novanet-manage novanet-network novanet-compute novanet-metadata novanet-lab; do
    set +o pipefail
    "$work/venv/bin/$program" --help 2>"$work/err" | head -1 >/dev/null
    set -o pipefail
    [ ! -s "$work/err" ] || fail "$program --help | head -1 said: $(cat "$work/err")"
done

# --config-dir: every *.conf of the directory, sorted, after the files before it.
mkdir "$work/conf.d"
printf '[DEFAULT]\nstate_path = %s/nowhere\n' "$work" > "$work/conf.d/10-first.conf"
printf '[DEFAULT]\nstate_path = %s/state\n' "$work" > "$work/conf.d/20-second.conf"
printf '[DEFAULT]\nstate_path = %s/ignored\n' "$work" > "$work/conf.d/30-ignored.txt"
"$work/venv/bin/novanet-manage" --config-dir "$work/conf.d" network list --format json \
    | grep -q '"10.0.0.0/24"' || fail "--config-dir was not read in sorted order"

# The database drivers are extras: a plain install has neither, and says which extra to add.
if "$work/venv/bin/python" -c 'import pymysql' 2>/dev/null || "$work/venv/bin/python" -c 'import psycopg' 2>/dev/null; then
    fail "PyMySQL or psycopg came with a plain 'pip install .'"
fi
for extra in mysql postgresql; do
    if "$work/venv/bin/novanet-manage" --config-dir "$work/conf.d" \
        --flagfile <(echo "--sql_connection=$extra://u@127.0.0.1/x") db version 2>"$work/err"; then
        fail "a $extra URL worked without its driver"
    else
        status=$?
    fi
    [ "$status" = 2 ] && [ "$(wc -l < "$work/err")" = 1 ] && grep -q "novanet\[$extra\]" "$work/err" \
        || fail "missing $extra driver: exit $status, $(cat "$work/err")"
done

# The wheel: LICENSE inside, Requires-Python >= 3.11, refused for 3.10, installable on 3.11.
"$work/venv/bin/pip" wheel --quiet --no-deps --wheel-dir "$work/dist" "$src" 2>&1 | grep -v "is ignored" >&2 || true
wheel=$(ls "$work/dist"/novanet-*.whl)
"$work/venv/bin/python" - "$wheel" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
meta = zipfile.ZipFile(sys.argv[1]).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
assert "Requires-Python: >=3.11" in meta.splitlines(), "no Requires-Python in the wheel"
assert "Provides-Extra: mysql" in meta and "Provides-Extra: postgresql" in meta, "extras missing"
assert not any(line.startswith("Requires-Dist: PyMySQL") and "extra ==" not in line for line in meta.splitlines())
lic = [n for n in names if n.endswith("/LICENSE")]
assert lic, "LICENSE not in the wheel"
assert b"Apache License" in zipfile.ZipFile(sys.argv[1]).read(lic[0])
EOF
if "$work/venv/bin/pip" install --quiet --no-deps --python-version 3.10 --only-binary=:all: \
    --target "$work/py310" "$wheel" 2>"$work/err"; then
    fail "pip installed the wheel for Python 3.10"
fi
grep -q "requires a different Python" "$work/err" || fail "3.10 refused for another reason: $(cat "$work/err")"
"$work/venv/bin/pip" install --quiet --no-deps --python-version 3.11 --only-binary=:all: \
    --target "$work/py311" "$wheel"
# With a real 3.10 interpreter at hand (pyenv, deadsnakes), `pip install .` itself must refuse.
py310=
for candidate in $(command -v python3.10 2>/dev/null) "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10.*/bin/python3.10; do
    if "$candidate" -c 'import sys, venv; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
        py310=$candidate
        break
    fi
done
if [ -n "$py310" ]; then
    "$py310" -m venv "$work/venv310"
    if "$work/venv310/bin/pip" install --quiet "$src" 2>"$work/err"; then
        fail "pip install . worked on $("$py310" --version)"
    fi
    grep -q "requires a different Python" "$work/err" || fail "3.10 refused for another reason: $(tail -3 "$work/err")"
    echo "install-check: $("$py310" --version) refused by pip install ."
else
    echo "install-check: no Python 3.10 here; the wheel's refusal above stands for it"
fi
echo "install-check: ok (pip install . in a fresh venv, seed flow, bad input refused, packaging)"
