#!/usr/bin/env bash
# Installs the Debian packages that hold the embedded default's data, when they are missing.
# usage: install_system_data.sh all|wordnet
set -euo pipefail
want=${1:-all}
declare -A probe=(
  [wordnet-base]=/usr/share/wordnet/data.noun
  [dict-gcide]=/usr/share/dictd/gcide.dict.dz
  [tuxpaint-stamps-default]=/usr/share/tuxpaint/stamps
  [openclipart-png]=/usr/share/openclipart/png
  [openclipart-svg]=/usr/share/openclipart/svg
  [librsvg2-bin]=/usr/bin/rsvg-convert
)
if [ "$want" = wordnet ]; then pkgs=(wordnet-base); else pkgs=("${!probe[@]}"); fi
missing=()
for p in "${pkgs[@]}"; do [ -e "${probe[$p]}" ] || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing data packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
