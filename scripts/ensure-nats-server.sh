#!/usr/bin/env bash
# Makes sure a nats-server >= 2.10 is available, looking where Ferry looks (lib/nats-server.ts):
# $NATS_SERVER_BIN, then .tools/usr/sbin/nats-server, then PATH. If none fits, fetches one into
# .tools/ with scripts/fetch-nats-server.sh. Exit 0 when one is there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
min_major=2
min_minor=10

# Prints the version (x.y.z) of the nats-server at $1, or nothing.
version_of() {
  "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1 || true
}

recent_enough() {
  local major minor
  IFS=. read -r major minor _ <<<"$1"
  [ "${major:-0}" -gt "$min_major" ] || { [ "${major:-0}" -eq "$min_major" ] && [ "${minor:-0}" -ge "$min_minor" ]; }
}

candidates=()
[ -n "${NATS_SERVER_BIN:-}" ] && candidates+=("$NATS_SERVER_BIN")
candidates+=("$root/.tools/usr/sbin/nats-server")
IFS=: read -r -a path_dirs <<<"${PATH:-}"
for dir in "${path_dirs[@]}"; do
  [ -n "$dir" ] && candidates+=("$dir/nats-server")
done

for candidate in "${candidates[@]}"; do
  [ -x "$candidate" ] || continue
  version="$(version_of "$candidate")"
  if [ -n "$version" ] && recent_enough "$version"; then
    echo "nats-server $version: $candidate"
    exit 0
  fi
  echo "ensure-nats-server: $candidate is ${version:-of unknown version}; Ferry needs >= $min_major.$min_minor" >&2
done

echo "ensure-nats-server: no nats-server >= $min_major.$min_minor found; fetching one into .tools/" >&2
bash "$root/scripts/fetch-nats-server.sh"
