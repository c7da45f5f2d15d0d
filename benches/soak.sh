#!/usr/bin/env bash
# Soak: a real gateway (two replicas sharing Redis when redis-server is installed) in front of two
# simulated upstreams, under mixed JSON and streaming load, while the world moves around it:
#
#   every 60 s   the config file is rewritten and reloaded (POST /admin/reload on each replica)
#   every 120 s  the route is killed, and revived a quarter of an interval later (admin API)
#   every 300 s  one upstream restarts (SIGTERM: it drains, refuses, comes back on its port)
#   every 600 s  Redis restarts, empty (fleet mode only)
#
# The intervals are for SOAK_MINUTES=30 and scale with the duration, so a 3-minute run still has
# every event (reload every 6 s, kill every 12 s, upstream every 30 s, Redis every 60 s).
#
#   bash benches/soak.sh [BINARY]        # BINARY: default target/release/switchyard
#
# Env: SOAK_MINUTES (30), SOAK_RATE (requests per second, 120), SOAK_MAX_RSS_SLOPE (MiB/h,
# 1.0), SOAK_SETTLE (s to wait for descriptors and threads to come back after the load, 150:
# idle upstream connections are kept 90 s), SOAK_FLEET (auto | 0 | 1), SOAK_THREAD_SLACK
# (threads allowed above the idle figure after the load, 0), HTTP1 (`server.http1`; unset: left
# out, hyper).
# Verdict, per replica: no lost request (every one answered 200 whole, or the kill switch's
# fallback), VmRSS slope after the warm-up (the first sixth) below SOAK_MAX_RSS_SLOPE, open
# descriptors and threads back to their idle figure before the load once it stops, every event
# done. Prints a summary (also target/soak/summary.txt); exits 1 on a failed verdict.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/benches
BIN=$(realpath "${1:-$ROOT/target/release/switchyard}")
MINUTES=${SOAK_MINUTES:-30}
RATE=${SOAK_RATE:-120}
MAX_SLOPE=${SOAK_MAX_RSS_SLOPE:-1.0}
SETTLE=${SOAK_SETTLE:-150}
FLEET=${SOAK_FLEET:-auto}
THREAD_SLACK=${SOAK_THREAD_SLACK:-0}
HTTP1_LINE=${HTTP1:+http1 = \"$HTTP1\"}
OUT=$ROOT/target/soak

die() { echo "soak: error: $*" >&2; exit 2; }
say() { printf '%s  %s\n' "$(date -u +%T)" "$*" | tee -a "$OUT/events.log" >&2; }
[[ -x $BIN ]] || die "no binary at $BIN (build it, or pass its path)"
for tool in curl python3; do command -v "$tool" >/dev/null || die "$tool not found"; done
if [[ $FLEET == auto ]]; then
    FLEET=0; command -v redis-server >/dev/null && FLEET=1
fi
ulimit -n 20000 || true
unset RUST_LOG

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/switchyard-soak.XXXXXX)
rm -f "$OUT"/*
# The intervals, in seconds, scaled to the duration.
read -r DUR RELOAD KILL UPSTREAM REDIS WARMUP SAMPLE < <(awk -v m="$MINUTES" 'BEGIN {
    f = m / 30; d = m * 60
    printf "%d %.1f %.1f %.1f %.1f %d %.1f\n", d, 60*f, 120*f, 300*f, 600*f, (d/6 > 20 ? d/6 : 20), (d/180 > 1 ? d/180 : 1) }')

PIDS=()
stop_pid() { # stop_pid PID: TERM, wait (bounded), KILL; forget it
    local kept=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || kept+=("$p"); done
    PIDS=("${kept[@]}")
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 100); do
        [[ $(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null || echo Z) == Z ]] && break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    cp "$WORK"/*.log "$OUT/" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    die "nothing listening on port $1 (see $WORK)"
}

read -r SIM_A SIM_B GW_1 ADM_1 GW_2 ADM_2 REDIS_PORT < <(free_ports 7)
declare -A SIM_PID
start_sim() { # start_sim PORT: streams of 8 chunks 10 ms apart, JSON at once
    "$BIN" sim --listen "127.0.0.1:$1" --profile instant >>"$WORK/sim-$1.log" 2>&1 &
    SIM_PID[$1]=$!; PIDS+=("$!")
    wait_port "$1"
    curl -sSf --max-time 5 -X PATCH "http://127.0.0.1:$1/sim/profile" \
        -d '{"chunk_interval_ms":10,"stream_chunks":8,"completion_tokens":16}' >/dev/null
}
start_redis() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        >>"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!; PIDS+=("$REDIS_PID")
    wait_port "$REDIS_PORT"
}

export SOAK_ADMIN_TOKEN=soak-operator-secret-0123456789
AUTH="authorization: Bearer $SOAK_ADMIN_TOKEN"
RETRY_AFTER=30
write_config() { # write_config NAME PORT ADMIN_PORT: the replica's file, replaced atomically
    local fleet=""
    [[ $FLEET == 1 ]] && fleet="[fleet]
redis_url = \"redis://127.0.0.1:$REDIS_PORT\"
namespace = \"soak\"
instance_id = \"$1\"
reconcile_interval = \"1s\"
"
    cat >"$WORK/$1.toml.tmp" <<EOF
# benches/soak.sh: replica $1; rewritten by the soak (retry_after moves) to reload it.
[server]
listen = "127.0.0.1:$2"
$HTTP1_LINE

[admin]
listen = "127.0.0.1:$3"
state_dir = "$WORK/$1-state"

[[admin.tokens]]
name = "soak"
role = "operator"
kind = "automation"
token_env = "SOAK_ADMIN_TOKEN"

[log]
level = "warn"

[models."gpt-4o"]
context_window = 128000
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10.0

[upstreams.sims]
endpoints = ["http://127.0.0.1:$SIM_A", "http://127.0.0.1:$SIM_B"]

[[routes]]
name = "soak"
match = { path_prefix = "/v1/" }
dialect = "openai"
upstream = "sims"

[routes.kill_switch]
fallback = { text = "Paused for the soak." }
retry_after = "${RETRY_AFTER}s"

$fleet
EOF
    mv "$WORK/$1.toml.tmp" "$WORK/$1.toml"
}
declare -A GW_PID
start_gateway() { # start_gateway NAME PORT ADMIN_PORT
    write_config "$@"
    "$BIN" check --config "$WORK/$1.toml" >/dev/null
    "$BIN" serve --config "$WORK/$1.toml" >>"$WORK/$1.log" 2>&1 &
    GW_PID[$1]=$!; PIDS+=("$!")
    wait_port "$2"
    for _ in $(seq 100); do
        curl -sf --max-time 2 "http://127.0.0.1:$2/ready" >/dev/null && return 0
        sleep 0.1
    done
    die "$1 never became ready (see $WORK/$1.log)"
}

start_sim "$SIM_A"
start_sim "$SIM_B"
REPLICAS=("gw1:$GW_1:$ADM_1")
if [[ $FLEET == 1 ]]; then
    start_redis
    REPLICAS+=("gw2:$GW_2:$ADM_2")
fi
for r in "${REPLICAS[@]}"; do IFS=: read -r name port admin <<<"$r"; start_gateway "$name" "$port" "$admin"; done
PORTS=$(for r in "${REPLICAS[@]}"; do cut -d: -f2 <<<"$r"; done | paste -sd,)

# What each replica holds at rest, before any request: the figures it must come back to.
probe() { # probe PID: "rss_kib fds threads"
    local rss threads fds
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status")
    threads=$(awk '/^Threads:/ {print $2}' "/proc/$1/status")
    fds=$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l)
    echo "$rss $fds $threads"
}
for r in "${REPLICAS[@]}"; do
    name=${r%%:*}
    echo "$name $(probe "${GW_PID[$name]}")" >>"$WORK/cold.txt"
done
{
    echo "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "binary=$BIN"
    echo "minutes=$MINUTES rate=$RATE fleet=$FLEET replicas=${#REPLICAS[@]}"
    echo "intervals: reload=${RELOAD}s kill=${KILL}s upstream=${UPSTREAM}s redis=${REDIS}s warmup=${WARMUP}s sample=${SAMPLE}s"
    echo "cpus=$(nproc) load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/meta.txt"
say "soak: $MINUTES min, ${#REPLICAS[@]} replica(s) on $PORTS, upstreams $SIM_A $SIM_B, fleet=$FLEET"

admin() { # admin METHOD PATH BODY on every replica; retried for up to 30 s (Redis restarting)
    local r name admin code
    for r in "${REPLICAS[@]}"; do
        IFS=: read -r name _ admin <<<"$r"
        for attempt in $(seq 60); do
            code=$(curl -s -o "$WORK/admin.out" -w "%{http_code}" --max-time 5 -X "$1" -H "$AUTH" -H "content-type: application/json" \
                "http://127.0.0.1:$admin$2" -d "$3" || echo 000)
            [[ $code == 200 ]] && break
            echo "$(date -u +%T) $1 $2 on $name: $code $(head -c 300 "$WORK/admin.out")" >>"$OUT/admin-retries.log"
            sleep 0.5
        done
        [[ $code == 200 ]] || { say "FAILED: $1 $2 on $name answered $code"; echo fail >>"$OUT/failed-events"; }
        # In fleet mode one replica's kill or revive is the fleet's: once is enough.
        if [[ $2 == */kill ]]; then break; fi
    done
}

# Warm-up: traffic, kills and a reload, so the baseline holds what a serving gateway keeps.
# tokio keeps the threads that `block_in_place` (state files are written that way, off the
# workers) handed a worker's place to: a plateau reached in the first admin calls, not a leak.
warm_up() {
    local r port j loops=()
    for r in "${REPLICAS[@]}"; do
        port=$(cut -d: -f2 <<<"$r")
        for j in 1 2 3 4; do
            for _ in $(seq 25); do
                curl -s -o /dev/null --max-time 10 -H 'content-type: application/json' \
                    --data-binary "@$BENCH/chat.json" "http://127.0.0.1:$port/v1/chat/completions" || true
            done &
            loops+=("$!")
        done
    done
    for _ in 1 2 3; do
        admin POST /admin/routes/soak/kill '{"reason":"soak warm-up"}'
        admin DELETE /admin/routes/soak/kill '{"reason":"soak warm-up"}'
    done
    admin POST /admin/reload '{"reason":"soak warm-up"}'
    wait "${loops[@]}"
    sleep 12 # tokio's idle blocking threads leave after 10 s
}
warm_up
# Baseline: descriptors as started (cold), memory and threads after the warm-up.
for r in "${REPLICAS[@]}"; do
    name=${r%%:*}
    read -r _ cold_fds _ < <(grep "^$name " "$WORK/cold.txt" | cut -d' ' -f2-)
    read -r rss _ threads < <(probe "${GW_PID[$name]}")
    echo "$name $rss $cold_fds $threads" >>"$OUT/baseline.txt"
done
say "baseline (name rss_kib fds threads): $(paste -sd';' "$OUT/baseline.txt")"

SIM_TURN=0
do_event() {
    case $1 in
    reload)
        RETRY_AFTER=$((RETRY_AFTER == 30 ? 31 : 30))
        for r in "${REPLICAS[@]}"; do IFS=: read -r name port admin <<<"$r"; write_config "$name" "$port" "$admin"; done
        admin POST /admin/reload '{"reason":"soak"}' ;;
    kill) admin POST /admin/routes/soak/kill '{"reason":"soak kill"}' ;;
    revive) admin DELETE /admin/routes/soak/kill '{"reason":"soak revive"}' ;;
    upstream)
        local port=$SIM_A
        ((SIM_TURN++ % 2)) && port=$SIM_B
        stop_pid "${SIM_PID[$port]}"
        start_sim "$port" ;;
    redis)
        stop_pid "$REDIS_PID"
        start_redis ;;
    esac
    say "$1"
    echo "$1" >>"$OUT/done-events"
}

sampler() { # every SAMPLE s: "t name rss_kib fds threads"
    local t0=$1 r name
    trap - INT TERM EXIT
    while :; do
        for r in "${REPLICAS[@]}"; do
            name=${r%%:*}
            echo "$(awk -v t0="$t0" '{print $1 - t0}' /proc/uptime) $name $(probe "${GW_PID[$name]}")"
        done >>"$OUT/samples.txt"
        sleep "$SAMPLE"
    done
}

T0=$(cut -d' ' -f1 /proc/uptime)
python3 "$BENCH/soak_client.py" --ports "$PORTS" --seconds "$DUR" --rate "$RATE" \
    --out "$OUT/client.json" >"$WORK/client.log" 2>&1 &
CLIENT=$!; PIDS+=("$CLIENT")
sampler "$T0" &
SAMPLER=$!; PIDS+=("$SAMPLER")

awk -v d="$DUR" -v rl="$RELOAD" -v k="$KILL" -v u="$UPSTREAM" -v rd="$REDIS" -v fleet="$FLEET" 'BEGIN {
    for (t = rl; t < d - 2; t += rl) print t, "reload"
    for (t = k; t < d - 2; t += k) { print t + 0.5, "kill"; print t + 0.5 + k / 4, "revive" }
    for (t = u; t < d - 2; t += u) print t + 1, "upstream"
    if (fleet == 1) for (t = rd; t < d - 2; t += rd) print t + 1.5, "redis"
}' | sort -n >"$WORK/schedule"
while read -r at event; do
    now=$(awk -v t0="$T0" '{print $1 - t0}' /proc/uptime)
    wait_s=$(awk -v a="$at" -v n="$now" 'BEGIN {w = a - n; print (w > 0 ? w : 0)}')
    sleep "$wait_s"
    do_event "$event"
done <"$WORK/schedule"

wait "$CLIENT" || die "the load client failed: $(cat "$WORK/client.log")"
stop_pid "$SAMPLER"
say "load done: $(cat "$OUT/client.json")"
# The route must end alive (a kill's revive may fall after the last request).
admin DELETE /admin/routes/soak/kill '{"reason":"soak end"}' >/dev/null

# Back to rest: descriptors and threads down to the idle figures (upstream connections stay
# pooled for 90 s idle; blocking threads for 10 s).
settled=0
for _ in $(seq $((SETTLE / 2))); do
    : >"$OUT/after.txt"
    for r in "${REPLICAS[@]}"; do
        name=${r%%:*}
        echo "$name $(probe "${GW_PID[$name]}")" >>"$OUT/after.txt"
    done
    if python3 - "$OUT/baseline.txt" "$OUT/after.txt" "$THREAD_SLACK" <<'EOF'
import sys
base = {l.split()[0]: list(map(int, l.split()[1:])) for l in open(sys.argv[1])}
after = {l.split()[0]: list(map(int, l.split()[1:])) for l in open(sys.argv[2])}
slack = int(sys.argv[3])
sys.exit(0 if all(after[n][1] <= base[n][1] and after[n][2] <= base[n][2] + slack for n in base) else 1)
EOF
    then settled=1; break; fi
    sleep 2
done
for r in "${REPLICAS[@]}"; do
    name=${r%%:*}
    curl -s --max-time 5 "http://127.0.0.1:${r##*:}/metrics" >"$OUT/$name-metrics.txt" || true
done
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"

python3 - "$OUT" "$WARMUP" "$MAX_SLOPE" "$settled" "$FLEET" "$THREAD_SLACK" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
out, warmup, max_slope, settled, fleet = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1", sys.argv[5] == "1"
slack = int(sys.argv[6])
client = json.loads((out / "client.json").read_text())
rows = [l.split() for l in (out / "samples.txt").read_text().splitlines() if l.strip()]
base = {l.split()[0]: list(map(int, l.split()[1:])) for l in open(out / "baseline.txt")}
after = {l.split()[0]: list(map(int, l.split()[1:])) for l in open(out / "after.txt")}
done = (out / "done-events").read_text().split() if (out / "done-events").exists() else []
failed = (out / "failed-events").read_text().split() if (out / "failed-events").exists() else []
meta = (out / "meta.txt").read_text()
print(meta.strip())
ok = True
def verdict(cond, text):
    global ok
    ok &= cond
    print(f"  [{'ok' if cond else 'FAIL'}] {text}")
print(f"requests: {client['sent']} sent ({client['streams']} streams), {client['ok']} answered 200, "
      f"{client['fallback']} by the kill switch's fallback, {client['lost']} lost")
verdict(client["lost"] == 0, f"lost requests: {client['lost']} {client['lost_by_kind'] or ''}")
for lost in client["lost_first"][:5]:
    print(f"      {lost}")
counts = {e: done.count(e) for e in ("reload", "kill", "revive", "upstream", "redis")}
wanted = ["reload", "kill", "revive", "upstream"] + (["redis"] if fleet else [])
verdict(all(counts[e] >= 1 for e in wanted) and not failed,
        "events: " + ", ".join(f"{e} ×{counts[e]}" for e in wanted) + (f"; {len(failed)} admin calls failed" if failed else ""))
for name in sorted(base):
    pts = [(float(r[0]), int(r[2])) for r in rows if r[1] == name and float(r[0]) >= warmup]
    n = len(pts)
    if n >= 3:
        mx = sum(t for t, _ in pts) / n; my = sum(v for _, v in pts) / n
        sxx = sum((t - mx) ** 2 for t, _ in pts)
        slope = sum((t - mx) * (v - my) for t, v in pts) / sxx * 3600 / 1024  # KiB/s -> MiB/h
    else:
        slope = float("nan")
    rss = [v for _, v in pts]
    print(f"{name}: RSS after warm-up {min(rss)/1024:.1f}-{max(rss)/1024:.1f} MiB over {n} samples; "
          f"idle before {base[name][0]/1024:.1f} MiB, after {after[name][0]/1024:.1f} MiB")
    verdict(slope < max_slope, f"{name}: RSS slope after warm-up {slope:+.3f} MiB/h (limit {max_slope})")
    verdict(after[name][1] <= base[name][1],
            f"{name}: open descriptors {base[name][1]} idle before, {after[name][1]} after")
    verdict(after[name][2] <= base[name][2] + slack,
            f"{name}: threads {base[name][2]} idle before, {after[name][2]} after"
            + (f" (allowed +{slack})" if slack else ""))
print("verdict:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
EOF
