#!/usr/bin/env bash
# Debian's cloud-init, unpacked (never installed), for the test that runs its
# own EC2 and OpenStack metadata readers against novanet-metadata
# (tests/functional/test_metadata_cloudinit.py). python3-configobj comes
# along: cloud-init's network code imports it; requests, PyYAML and Jinja2 are
# in novanet's virtualenv already (oslo's dependencies).
# Usage: tools/fetch-cloud-init.sh [DIR]   (default .cache/cloud-init)
# Prints the directory to put on sys.path.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.cache/cloud-init}
site="$dest/root/usr/lib/python3/dist-packages"
if [ -f "$dest/.complete" ]; then
    echo "$site"
    exit 0
fi
work=$(mktemp -d /tmp/novanet-cloud-init.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt's _apt user writes the download here
download() { (cd "$work" && apt-get download -qq cloud-init python3-configobj) >&2 2>/dev/null; }
if ! download; then
    apt-get update -qq >&2
    download
fi
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$work/root"
done
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$work/root" "$dest.tmp" && mkdir -p "$dest" && mv "$dest.tmp" "$dest/root"
ls "$work"/*.deb | xargs -n1 basename > "$dest/.complete"
echo "$site"
