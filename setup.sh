#!/bin/sh
# Set up ksm-harness on a Debian machine, as root: the system packages it
# drives (swap tools, qemu + busybox for `ksm-harness vm`) and a virtualenv in
# .venv with the harness installed (its C helpers are compiled by cffi here).
set -eu
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive
packages="python3 python3-venv python3-dev gcc libffi-dev util-linux mount kmod procps qemu-system-x86 busybox-static"
missing=""
for p in $packages; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup.sh: installing$missing"
    apt-get update -qq
    apt-get install -y -qq $missing >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "setup.sh: ready: .venv/bin/ksm-harness"
