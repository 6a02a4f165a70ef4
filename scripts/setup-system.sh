#!/usr/bin/env bash
# Install (Debian) and start what the test suite talks to. Idempotent; safe on a fresh machine and in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use. Add here, never install by hand.
# chromium: the browser tests (Playwright drives Debian's build: nothing downloads a browser);
# fonts-liberation: readable text in its screenshots.
# ffmpeg: the command-line baseline of bench/composite_render.py.
# nginx + libnginx-mod-rtmp: the RTMP receiver of the livestream tests (started per test, unprivileged, on a
# free port with its own config: tests/integration/livestream/rtmp_server.py).
DEB_PACKAGES=(postgresql redis-server chromium fonts-liberation espeak-ng ffmpeg nginx libnginx-mod-rtmp)

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup-system: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PostgreSQL on 127.0.0.1:5432 with a `postgres` role the tests can reach without a password.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "setup-system: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432
# A fresh Debian install asks loopback clients for a password: let the test role in on 127.0.0.1 only.
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1" >/dev/null 2>&1; then
  hba="$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)"
  echo "setup-system: trusting 127.0.0.1 in $hba"
  sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main reload
  sleep 1
fi

# Azurite (Azure Blob emulator) from the npm registry, into the project's node_modules.
if [ ! -x node_modules/.bin/azurite ]; then
  if ! command -v npm >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  echo "setup-system: installing azurite (npm)"
  npm install --no-save --no-audit --no-fund --loglevel=error azurite >/dev/null
fi

# Redis on 127.0.0.1:6379 (the distributed job runner's broker).
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "setup-system: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
