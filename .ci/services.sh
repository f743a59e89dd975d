#!/usr/bin/env bash
# Make sure the services the tests talk to answer; start them (idempotently) if not.
set -u
ok() { timeout 2 bash -c "</dev/tcp/127.0.0.1/$1" 2>/dev/null; }
wait_for() { for _ in $(seq 1 30); do ok "$1" && return 0; sleep 1; done; echo "service on port $1 did not come up" >&2; return 1; }

if ! ok 5432; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_for 5432 || exit 1
fi
if ! ok 1883; then
  echo "starting Mosquitto"
  mosquitto -d -c /etc/mosquitto/mosquitto.conf || true
  wait_for 1883 || exit 1
fi
# Prometheus Alertmanager (Debian's 0.25) with the repository's config, single node on 127.0.0.1:9093.
# Tests start their own private instances (streaming_bridge.amproc); this one serves `make demo` and the bridge.
if ! command -v prometheus-alertmanager >/dev/null 2>&1; then
  echo "installing prometheus-alertmanager"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends prometheus-alertmanager >/dev/null 2>&1 \
    || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends prometheus-alertmanager >/dev/null; } \
    || { echo "could not install prometheus-alertmanager" >&2; exit 1; }
fi
if ! ok 9093; then
  echo "starting Alertmanager"
  AM_CONFIG="$(cd "$(dirname "$0")/.." && pwd)/streaming_bridge/alertmanager.yml"
  AM_DATA="${GRIDLAKE_ALERTMANAGER_STORAGE:-/tmp/gridlake-alertmanager}"
  mkdir -p "$AM_DATA"
  amtool check-config "$AM_CONFIG" >/dev/null || { echo "invalid $AM_CONFIG" >&2; exit 1; }
  setsid prometheus-alertmanager --config.file="$AM_CONFIG" --storage.path="$AM_DATA" \
    --web.listen-address=127.0.0.1:9093 --cluster.listen-address= >>"$AM_DATA/alertmanager.log" 2>&1 < /dev/null &
  wait_for 9093 || exit 1
fi
echo "services: PostgreSQL 127.0.0.1:5432, Mosquitto 127.0.0.1:1883 and Alertmanager 127.0.0.1:9093 answer"
