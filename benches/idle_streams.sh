#!/usr/bin/env bash
# Idle SSE streams: STREAMS streams through the gateway that the upstream holds open with only a
# heartbeat comment (`: ping`) every HEARTBEAT seconds, as providers do while an agent waits on
# a tool; then the gateway's CPU time (utime + stime from /proc) over HOLD seconds with all of
# them held, and its resident memory per stream ((VmRSS held - VmRSS idle) / streams).
#
#   bash benches/idle_streams.sh [BINARY]     # BINARY: default target/release/switchyard
#
# Env: STREAMS (9000: a proxied stream holds two descriptors and this machine's hard limit is
# 20,000), HOLD (60), HEARTBEAT (15, seconds), HTTP1 (`server.http1`; unset: left out, hyper). One JSON line on stdout, also in
# target/bench/idle_streams.jsonl. Needs python3 >= 3.11 and curl.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/benches
BIN=$(realpath "${1:-$ROOT/target/release/switchyard}")
STREAMS=${STREAMS:-9000}
HOLD=${HOLD:-60}
HEARTBEAT=${HEARTBEAT:-15}
OUT=$ROOT/target/bench

die() { echo "idle_streams: error: $*" >&2; exit 1; }
[[ -x $BIN ]] || die "no binary at $BIN (cargo build --release -p switchyard, or pass its path)"
# Every process below inherits it: the gateway holds two descriptors per stream.
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) >= 2 * STREAMS + 100)) || die "ulimit -n is $(ulimit -n): too low for $STREAMS streams"
unset RUST_LOG
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/switchyard-idle.XXXXXX)

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listening on port $1"
}
read -r SIM GW GW_ADMIN < <(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')

"$BIN" sim --listen "127.0.0.1:$SIM" --profile instant >"$WORK/sim.log" 2>&1 &
SIM_PID=$!; PIDS+=("$SIM_PID")
wait_port "$SIM"
# The role chunk at once, then nothing but a heartbeat every HEARTBEAT s until the client leaves.
curl -sSf --max-time 5 -X PATCH "http://127.0.0.1:$SIM/sim/profile" \
    -d "{\"fail_mid_stream\":{\"mode\":\"hang\",\"after_chunks\":0},\"heartbeat_ms\":$((HEARTBEAT * 1000))}" >/dev/null

http1=()
[[ -n ${HTTP1:-} ]] && http1=(-e "/^\[server\]\$/a http1 = \"$HTTP1\"")
sed -e "s|@PORT@|$GW|; s|@ADMIN_PORT@|$GW_ADMIN|; s|@LEVEL@|warn|; s|@SIM_PORT@|$SIM|" \
    -e "s|@STATE_DIR@|$WORK/state|" "${http1[@]}" "$BENCH/gateway.toml.tmpl" >"$WORK/gateway.toml"
"$BIN" serve --config "$WORK/gateway.toml" >"$WORK/gateway.log" 2>&1 &
GW_PID=$!; PIDS+=("$GW_PID")
wait_port "$GW"

echo "idle_streams: $STREAMS streams, heartbeat ${HEARTBEAT}s, hold ${HOLD}s, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
timeout $((HOLD + 900)) python3 "$BENCH/stream_client.py" idle --port "$GW" --label switchyard \
    --streams "$STREAMS" --pids "$GW_PID" --sim-port "$SIM" --hold "$HOLD" |
    sed "s/}\$/, \"heartbeat_s\": $HEARTBEAT, \"commit\": \"$(git -C "$ROOT" rev-parse --short HEAD)\", \"cpus\": $(nproc), \"load_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}/" |
    tee -a "$OUT/idle_streams.jsonl"
