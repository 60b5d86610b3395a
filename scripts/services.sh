#!/usr/bin/env bash
# Make sure RabbitMQ and Redis answer on loopback: start them when installed, install them
# with apt-get when missing, then wait until they answer. Safe to run again and again.
set -euo pipefail

AMQP_PORT=${AMQP_PORT:-5672}
REDIS_PORT=${REDIS_PORT:-6379}
WAIT_SECONDS=${WAIT_SECONDS:-120}

say() { echo "services: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && exec 3>&- ; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root for: $*"; return 1; fi
}

apt_updated=no
apt_install() {
  if [ "$apt_updated" = no ]; then
    say "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=yes
  fi
  say "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

rabbit_ok() { port_open "$AMQP_PORT" && rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1; }
redis_ok() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

wait_for() {  # name, check function
  local name=$1 check=$2 waited=0
  until $check; do
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then say "$name did not answer within ${WAIT_SECONDS}s"; return 1; fi
    sleep 1; waited=$((waited + 1))
  done
  say "$name answers"
}

# --- RabbitMQ -----------------------------------------------------------------------------
if ! command -v rabbitmq-server >/dev/null; then apt_install rabbitmq-server; fi
if ! rabbit_ok; then
  if ! port_open "$AMQP_PORT"; then
    if rabbitmqctl -q status >/dev/null 2>&1; then
      say "RabbitMQ node is up but its app is stopped: start_app"
      as_root rabbitmqctl -q start_app || true
    else
      say "starting RabbitMQ"
      as_root rabbitmq-server -detached || true
    fi
  fi
  wait_for RabbitMQ rabbit_ok
else
  say "RabbitMQ answers"
fi

# --- Redis --------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null; then apt_install redis-server redis-tools; fi
if ! redis_ok; then
  say "starting Redis"
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no
  wait_for Redis redis_ok
else
  say "Redis answers"
fi

# The management plugin gives `postbacks stats` its rates (and operators a UI on :15672).
if ! rabbitmq-plugins -q is_enabled rabbitmq_management >/dev/null 2>&1; then
  say "enabling the RabbitMQ management plugin"
  as_root rabbitmq-plugins -q enable rabbitmq_management >/dev/null 2>&1 || say "management plugin not enabled (stats shows no rates)"
fi

# The cluster suite cuts one RabbitMQ node off from the others with iptables rules on its
# distribution ports (without it, it falls back to a cut inside Erlang).
if ! command -v iptables >/dev/null && [ "$(id -u)" -eq 0 ]; then
  apt_install iptables || say "iptables not installed (the cluster suite cuts nodes inside Erlang)"
fi
