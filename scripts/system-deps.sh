#!/bin/sh
# Installs the Debian packages Consilium needs, when they are missing.
#   system-deps.sh          everything `make test` needs (Chromium for the browser tests too)
#   system-deps.sh runtime  only what the running service needs (WeasyPrint's libraries)
set -eu
RUNTIME="libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core"
TEST="chromium poppler-utils"
wanted="$RUNTIME"
[ "${1:-all}" = runtime ] || wanted="$RUNTIME $TEST"
missing=""
for package in $wanted; do
  dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
  echo "Please install these Debian packages first:$missing" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
