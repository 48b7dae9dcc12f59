#!/usr/bin/env bash
# Brings up the whole stack on loopback and shows a secret round trip:
#   identity server + agent (join token made and used for you), three keepers, Nexus, and the
#   registration entries each needs (matched by uid and binary path), plus the `spike` admin.
#
#   ./quickstart.sh [up]     build, start what is not running, round-trip a secret
#                            (run again: restarts Nexus to show it unsealing itself)
#   ./quickstart.sh status   what is running
#   ./quickstart.sh down     stop everything (keepers hold the root key in memory only, so
#                            this also forgets the key; `up` then starts over with new data)
#
# Data, logs and sockets live under $SPIKE_QUICKSTART_DIR (default ./.quickstart). Ports are
# SPIKE_QUICKSTART_{SERVER,NEXUS,METRICS}_PORT and SPIKE_QUICKSTART_KEEPER_PORTS; a port of 0
# lets the kernel pick one (the tests do this): each process logs the address it bound, and the
# ports in use are kept in $DATA/ports until `down`, so a later `up` finds the same stack.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")" && pwd)
DATA=${SPIKE_QUICKSTART_DIR:-$ROOT/.quickstart}
PROFILE=${SPIKE_QUICKSTART_PROFILE:-release}   # or debug: faster to build, slower to run
BIN=$ROOT/target/$PROFILE
TD=spike.ist
SERVER_PORT=${SPIKE_QUICKSTART_SERVER_PORT:-8081}
read -r -a KEEPER_PORTS <<<"${SPIKE_QUICKSTART_KEEPER_PORTS:-8441 8442 8443}"
NEXUS_PORT=${SPIKE_QUICKSTART_NEXUS_PORT:-8553}
METRICS_PORT=${SPIKE_QUICKSTART_METRICS_PORT:-8554}
# The ports of a stack that is up (ports picked by the kernel are known only from then on).
# shellcheck source=/dev/null
[[ -f $DATA/ports ]] && source "$DATA/ports"
AGENT_ID=spiffe://$TD/quickstart/agent
SERVER_SOCKET=$DATA/server/admin.sock
AGENT_SOCKET=$DATA/agent/api.sock

export SPIFFE_ENDPOINT_SOCKET=unix://$AGENT_SOCKET
export SPIKE_NEXUS_API_URL=https://127.0.0.1:$NEXUS_PORT

say() { printf '\033[1m== %s\033[0m\n' "$*"; }
fail() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

pid_of() { cat "$DATA/pids/$1" 2>/dev/null || true; }
running() { local pid; pid=$(pid_of "$1"); [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; }

port_free() { [[ $1 == 0 ]] || ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

bound_port() { # name, log marker: the port the process logged on that line (it was given 0)
  local deadline=$((SECONDS + 30)) port
  while :; do
    port=$(grep -m1 -F "$2" "$DATA/logs/$1.log" 2>/dev/null | grep -o 'address=[^ ]*' | sed 's/.*://' || true)
    [[ -n $port ]] && { echo "$port"; return; }
    running "$1" || fail "$1 exited before it was ready (log: $DATA/logs/$1.log)"
    ((SECONDS < deadline)) || fail "timed out waiting for $1 to log its address (log: $DATA/logs/$1.log)"
    sleep 0.2
  done
}

save_ports() {
  printf 'SERVER_PORT=%s\nKEEPER_PORTS=(%s)\nNEXUS_PORT=%s\nMETRICS_PORT=%s\n' \
    "$SERVER_PORT" "${KEEPER_PORTS[*]}" "$NEXUS_PORT" "$METRICS_PORT" >"$DATA/ports"
  SPIKE_NEXUS_API_URL=https://127.0.0.1:$NEXUS_PORT
}

start() { # name, command...
  local name=$1; shift
  nohup "$@" >"$DATA/logs/$name.log" 2>&1 &
  echo $! >"$DATA/pids/$name"
}

stop() {
  local pid; pid=$(pid_of "$1")
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DATA/pids/$1"
}

wait_until() { # description, seconds, command...
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out waiting for $what (logs: $DATA/logs)"
    sleep 0.2
  done
}

server() { "$BIN/spire-server" "$@" -socketPath "$SERVER_SOCKET"; }

ensure_entry() { # spiffe id, binary name
  if ! server entry show -spiffeID "$1" | grep -q "Entry ID"; then
    server entry create -spiffeID "$1" -parentID "$AGENT_ID" \
      -selector "unix:uid:$(id -u)" -selector "unix:path:$BIN/$2" >/dev/null
    echo "   registered $1 (uid $(id -u), $BIN/$2)"
  fi
}

nexus_ready() { "$BIN/spike" status >/dev/null 2>&1; }

start_nexus() {
  # Nexus runs from a config file, as a service would (examples/config/nexus.toml has every key).
  local keepers
  keepers=$(printf '"https://127.0.0.1:%s", ' "${KEEPER_PORTS[@]}")
  cat >"$DATA/nexus.toml" <<EOF
listen = "127.0.0.1:$NEXUS_PORT"
trust_domain = "$TD"
data_dir = "$DATA/nexus"
keepers = [${keepers%, }]
metrics_listen = "127.0.0.1:$METRICS_PORT"
audit_log = "$DATA/logs/audit.log"
EOF
  start nexus "$BIN/nexus" --config "$DATA/nexus.toml"
  if [[ $NEXUS_PORT == 0 ]]; then NEXUS_PORT=$(bound_port nexus "nexus listening"); fi
  if [[ $METRICS_PORT == 0 ]]; then METRICS_PORT=$(bound_port nexus "metrics at http://"); fi
  save_ports
}

cmd_up() {
  if running nexus; then
    say "already up: restarting Nexus (kill -9) to show it unsealing itself from the keepers"
    kill -9 "$(pid_of nexus)"; rm -f "$DATA/pids/nexus"
    local t0; t0=$(date +%s%N)
    start_nexus
    wait_until "Nexus to unseal" 60 nexus_ready
    echo "   Nexus ready $(( ($(date +%s%N) - t0) / 1000000 )) ms after start (including the CLI's own SVID fetch)"
    round_trip
    return
  fi
  if [[ -d $DATA/nexus ]] && ! running keeper1 && ! running keeper2 && ! running keeper3; then
    fail "Nexus data exists in $DATA/nexus but no keeper is running, so its root key is gone (keepers hold it in memory only). Run './quickstart.sh down' to start over."
  fi
  command -v cargo >/dev/null || fail "cargo is required (https://rustup.rs)"
  [[ $(id -u) == 0 ]] || fail "run as root: Nexus and the keepers disable core dumps, so only a root agent can attest them by binary path"
  local port
  for port in "$SERVER_PORT" "${KEEPER_PORTS[@]}" "$NEXUS_PORT" "$METRICS_PORT"; do
    port_free "$port" || fail "port $port on 127.0.0.1 is in use; stop what uses it or set SPIKE_QUICKSTART_*_PORT"
  done

  local flags=(--bins)
  [[ $PROFILE == release ]] && flags+=(--release)
  say "building (cargo build ${flags[*]}; the first build takes a few minutes)"
  (cd "$ROOT" && cargo build "${flags[@]}")

  mkdir -p "$DATA"/{server,agent,nexus,logs,pids}
  chmod 700 "$DATA"

  say "identity server (trust domain $TD)"
  running server || start server "$BIN/spire-server" run -trustDomain "$TD" -bindAddress 127.0.0.1 \
    -serverPort "$SERVER_PORT" -dataDir "$DATA/server/data" -socketPath "$SERVER_SOCKET"
  wait_until "the identity server" 30 "$BIN/spire-server" healthcheck -socketPath "$SERVER_SOCKET"
  if [[ $SERVER_PORT == 0 ]]; then SERVER_PORT=$(bound_port server "server ready"); fi
  save_ports

  say "agent (Workload API at $AGENT_SOCKET)"
  if ! running agent; then
    server bundle show >"$DATA/bundle.pem"
    local token=()
    if [[ ! -f $DATA/agent/data/agent-svid.pem ]]; then
      token=(-joinToken "$(server token generate -spiffeID "$AGENT_ID" | awk '{print $2}')")
      echo "   attesting with a new single-use join token"
    else
      echo "   re-using the agent's stored SVID"
    fi
    start agent "$BIN/spire-agent" run -trustDomain "$TD" -serverAddress 127.0.0.1 \
      -serverPort "$SERVER_PORT" -trustBundle "$DATA/bundle.pem" -dataDir "$DATA/agent/data" \
      -socketPath "$AGENT_SOCKET" "${token[@]}"
  fi
  wait_until "the agent" 30 "$BIN/spire-agent" healthcheck -socketPath "$AGENT_SOCKET"

  say "registration entries"
  ensure_entry "spiffe://$TD/spike/nexus" nexus
  ensure_entry "spiffe://$TD/spike/keeper" keeper
  ensure_entry "spiffe://$TD/spike/pilot/role/superuser" spike

  say "keepers"
  local i
  for i in 1 2 3; do
    running "keeper$i" || start "keeper$i" "$BIN/keeper" --listen "127.0.0.1:${KEEPER_PORTS[$((i - 1))]}" --trust-domain "$TD"
  done
  for i in 0 1 2; do
    if [[ ${KEEPER_PORTS[$i]} == 0 ]]; then
      KEEPER_PORTS[i]=$(bound_port "keeper$((i + 1))" "keeper ready")
    fi
  done
  save_ports

  say "Nexus"
  start_nexus
  echo "   listening at $SPIKE_NEXUS_API_URL; keepers at 127.0.0.1:${KEEPER_PORTS[*]}"
  wait_until "Nexus to be ready" 60 nexus_ready
  "$BIN/spike" status

  round_trip
  cmd_status
  cat <<EOF

Try next (the environment below points spike at this stack):
  export SPIFFE_ENDPOINT_SOCKET=$SPIFFE_ENDPOINT_SOCKET SPIKE_NEXUS_API_URL=$SPIKE_NEXUS_API_URL PATH=$BIN:\$PATH
  spike secret put db/password user=app password=-     # the value is read from stdin
  spike secret get db/password -f json
  spike secret metadata get db/password
  spike policy apply --file policies/examples/db-writer.yaml
  ./quickstart.sh          # again: kill -9 Nexus and watch it unseal itself
  ./quickstart.sh down     # stop everything
Logs: $DATA/logs (audit.log: one JSON line per Nexus request)
Metrics: curl -s http://127.0.0.1:$METRICS_PORT/metrics
EOF
}

round_trip() {
  say "secret round trip"
  local value="hello from quickstart at $(date +%T)"
  "$BIN/spike" secret put quickstart/greeting "message=$value"
  printf '   read back: '
  "$BIN/spike" secret get quickstart/greeting message
}

cmd_status() {
  say "status"
  local name
  for name in server agent keeper1 keeper2 keeper3 nexus; do
    if running "$name"; then
      printf '   %-8s running (pid %s)\n' "$name" "$(pid_of "$name")"
    else
      printf '   %-8s stopped\n' "$name"
    fi
  done
}

cmd_down() {
  local name
  for name in nexus keeper1 keeper2 keeper3 agent server; do stop "$name"; done
  rm -rf "$DATA/nexus" "$DATA/ports"
  say "stopped; the keepers' shards are gone, so Nexus's data was removed (identity data kept)"
}

case ${1:-up} in
  up) cmd_up ;;
  status) cmd_status ;;
  down) cmd_down ;;
  *) fail "usage: $0 [up|status|down]" ;;
esac
