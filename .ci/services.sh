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
# RabbitMQ: the Celery broker of GRIDLAKE_EXECUTOR=celery (pipelines.executors). "Answers" = speaks AMQP 0-9-1:
# the protocol header gets a Connection.Start method frame (frame type 1) back, not just an open port.
amqp_ok() { [ "$(timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672; printf "AMQP\x00\x00\x09\x01" >&3; head -c 1 <&3 | od -An -tx1' 2>/dev/null | tr -d ' ')" = "01" ]; }
if ! amqp_ok; then
  echo "starting RabbitMQ"
  command -v rabbitmq-server >/dev/null 2>&1 || { echo "rabbitmq-server is not installed (apt-get install rabbitmq-server)" >&2; exit 1; }
  rabbitmq-server -detached || true
  for _ in $(seq 1 60); do amqp_ok && break; sleep 1; done
  amqp_ok || { echo "RabbitMQ did not answer AMQP on 127.0.0.1:5672" >&2; exit 1; }
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
# the browser the UI tests drive (Playwright with the system browser; never `playwright install`)
if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian chromium for the UI tests"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium || { echo "could not install chromium" >&2; exit 1; }
fi
echo "services: PostgreSQL 127.0.0.1:5432, Mosquitto 127.0.0.1:1883, RabbitMQ 127.0.0.1:5672 and Alertmanager 127.0.0.1:9093 answer"
echo "browser: $(/usr/bin/chromium --version 2>/dev/null)"
