#!/usr/bin/env bash
# Fetches nats-server >= 2.10 from Debian trixie's package into .tools/ (git-ignored) without
# touching the system: an apt sources file derived from the machine's own, with the suite renamed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.tools"
bin="$dest/usr/sbin/nats-server"
suite="${FERRY_NATS_SUITE:-trixie}"

if [ -x "$bin" ]; then
  echo "nats-server already present: $bin ($("$bin" --version))"
  exit 0
fi

src_file=/etc/apt/sources.list.d/debian.sources
if [ ! -f "$src_file" ]; then
  echo "fetch-nats-server: $src_file not found; install nats-server >= 2.10 yourself and set NATS_SERVER_BIN" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sources.d" "$work/lists/partial" "$work/archives/partial"
# Keep only the main archive stanza (not -security / -updates) and rename its suite.
awk -v suite="$suite" '
  BEGIN { RS=""; ORS="\n\n" }
  /Suites:/ && !/security/ {
    n = split($0, lines, "\n"); out = ""
    for (i = 1; i <= n; i++) {
      if (lines[i] ~ /^Suites:/) lines[i] = "Suites: " suite
      out = out lines[i] "\n"
    }
    printf "%s\n", out
  }' "$src_file" > "$work/sources.d/ferry-nats.sources"

apt_opts=(
  -o "Dir::Etc::SourceParts=$work/sources.d"
  -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache::Archives=$work/archives"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
)
apt-get "${apt_opts[@]}" update -qq
(cd "$work" && apt-get "${apt_opts[@]}" download nats-server -qq)
mkdir -p "$dest"
dpkg -x "$work"/nats-server_*.deb "$dest"
echo "nats-server installed: $bin ($("$bin" --version))"
