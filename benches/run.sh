#!/usr/bin/env bash
# Load benchmark: the sim upstream directly vs switchyard vs nginx in front of it, on this machine.
#
#   bash benches/run.sh            # full run: DURATION=15 REPEATS=3 STREAMS=8000 CONNS="8 32 128"
#   bash benches/run.sh --quick    # smoke run: 2 s, 1 repeat, 500 streams, 32 connections
#   bash benches/run.sh --bookkeeping  # switchyard with and without safe-change bookkeeping only:
#                                      # DURATION=10 REPEATS=6 CONNS=32 USERS=1000
#
# Env: DURATION (s per wrk run), REPEATS, STREAMS (held SSE streams), CONNS (wrk connection
# counts), WARMUP (s), STREAM_REQUESTS (requests per TTFB measurement), USERS (distinct user
# keys the --bookkeeping requests cycle through), HTTP1 (the switchyard gateways'
# `server.http1`, e.g. builtin; unset: the key is left out and hyper serves).
# Results: Markdown on stdout and in target/bench/results.md; raw outputs in target/bench/raw/.
# Load generator, proxies and upstream all share this machine's cores; nothing is pinned. Each
# run records the CPU share used by processes that are not part of the benchmark ("other CPU").
# Needs wrk, nginx, curl, python3 >= 3.11, flock. One run at a time (lock: target/bench.lock).
set -euo pipefail

MODE=full
case "$#:${1:-}" in
0:) ;;
1:--quick)
    : "${DURATION:=2}" "${REPEATS:=1}" "${STREAMS:=500}" "${CONNS:=32}" "${STREAM_REQUESTS:=40}"
    ;;
1:--bookkeeping)
    # Only the cost of the bookkeeping is measured, as a ratio between gateways in the same
    # run: more, shorter repeats than the full run, at the one connection count the targets
    # are stated for. A multiple of 3 repeats puts each gateway in each position equally often.
    MODE=bookkeeping
    : "${DURATION:=10}" "${REPEATS:=6}" "${CONNS:=32}"
    ;;
*)
    echo "usage: $0 [--quick | --bookkeeping]" >&2
    exit 2
    ;;
esac
DURATION=${DURATION:-15}
REPEATS=${REPEATS:-3}
STREAMS=${STREAMS:-8000}
CONNS=${CONNS:-"8 32 128"}
WARMUP=${WARMUP:-3}
STREAM_REQUESTS=${STREAM_REQUESTS:-200}
USERS=${USERS:-1000}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/benches
OUT=$ROOT/target/bench
cd "$ROOT"
ulimit -n 20000 # every process started below inherits it
unset RUST_LOG  # would override [log] level

log() { printf '\n== %s  (load %s)\n' "$*" "$(cut -d' ' -f1-3 /proc/loadavg)" >&2; }
die() { echo "error: $*" >&2; exit 1; }
for tool in cargo wrk nginx curl python3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

mkdir -p "$ROOT/target"
exec 9>"$ROOT/target/bench.lock" # one run at a time: runs would disturb each other and share $OUT
flock -n 9 || die "another benches/run.sh is running (lock: target/bench.lock)"

log "building"
cargo build --release -p switchyard
WORK=$(mktemp -d /tmp/switchyard-bench.XXXXXX)
cp target/release/switchyard "$WORK/switchyard" # others may rebuild target/ meanwhile
BIN=$WORK/switchyard
rm -rf "$OUT" && mkdir -p "$OUT/raw"

PIDS=()
stop() { # stop PID: TERM, then wait (bounded) for it to exit; forget it (no stale kill later)
    local kept=() pid
    for pid in "${PIDS[@]}"; do [[ $pid == "$1" ]] || kept+=("$pid"); done
    PIDS=("${kept[@]}")
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 50); do # until gone or a zombie (kill -0 succeeds on a zombie)
        [[ $(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null || echo Z) == Z ]] && break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
save_logs() {
    local d
    cp "$WORK"/*.log "$OUT/raw/" 2>/dev/null || true
    for d in "$WORK"/nginx*/; do cp "$d/error.log" "$OUT/raw/$(basename "$d")-error.log" 2>/dev/null || true; done
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop "$pid"; done
    save_logs
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() { # free_ports N: N distinct ephemeral ports, held open together while chosen
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_port() { # wait_port PORT: until something accepts there (10 s at most)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listening on port $1 (see $WORK)"
}

start_sim() { # start_sim PORT: sets SIM_PID
    "$BIN" sim --listen "127.0.0.1:$1" --profile instant >"$WORK/sim-$1.log" 2>&1 &
    SIM_PID=$!; PIDS+=("$SIM_PID")
    wait_port "$1"
}

start_switchyard() { # start_switchyard NAME PORT ADMIN_PORT LEVEL SIM_PORT STDOUT [EXTRA]: sets
                     # SY_PID; EXTRA, a template appended to gateway.toml.tmpl, adds to the
                     # same gateway rather than copying it, so the configs cannot drift apart
    local conf=$WORK/$1.toml
    mkdir -p "$WORK/$1-state"
    local http1=()
    [[ -n ${HTTP1:-} ]] && http1=(-e "/^\[server\]\$/a http1 = \"$HTTP1\"")
    cat "$BENCH/gateway.toml.tmpl" ${7:+"$7"} |
        sed -e "s|@PORT@|$2|; s|@ADMIN_PORT@|$3|; s|@LEVEL@|$4|; s|@SIM_PORT@|$5|" "${http1[@]}" \
            -e "s|@STATE_DIR@|$WORK/$1-state|" >"$conf"
    "$BIN" check --config "$conf" >&2
    "$BIN" serve --config "$conf" >"$6" 2>"$WORK/$1.err.log" &
    SY_PID=$!; PIDS+=("$SY_PID")
    wait_port "$2"
}

start_nginx() { # start_nginx NAME SIM_PORT PLAIN_PORT LOG_PORT SSE_PORT: sets NGX_PID, NGX_PIDS
    local dir=$WORK/$1
    mkdir -p "$dir"
    sed -e "s|@PREFIX@|$dir|g; s|@SIM_PORT@|$2|; s|@PORT_PLAIN@|$3|; s|@PORT_LOG@|$4|" \
        -e "s|@PORT_SSE@|$5|" "$BENCH/nginx.conf.tmpl" >"$dir/nginx.conf"
    nginx -t -q -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log"
    nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" -g 'daemon off;' &
    NGX_PID=$!; PIDS+=("$NGX_PID")
    wait_port "$3"; wait_port "$5"
    sleep 0.5
    NGX_PIDS=$(echo "$NGX_PID" $(pgrep -P "$NGX_PID") | tr ' ' ,) # master + workers
}

check_target() { # check_target NAME PORT: one request must answer 200 with a completion
    local body
    body=$(curl -sS --max-time 10 -w '\n%{http_code}' -H 'content-type: application/json' \
        --data-binary "@$BENCH/chat.json" "http://127.0.0.1:$2/v1/chat/completions")
    [[ "${body##*$'\n'}" == 200 && "$body" == *chat.completion* ]] ||
        die "$1 (port $2) answered: $body"
}

# Other processes may share this machine: measure the CPU that is not ours during a run.
cpu_mark() { # cpu_mark PID..: "busy total ours" jiffies (busy = user+nice+system+irq+softirq of
             # all CPUs, as task times include softirq work; ours = the PIDs + this shell's
             # finished children, e.g. wrk)
    local ours
    ours=$(for p in "$$" "$@"; do cat "/proc/$p/stat" 2>/dev/null; done |
        awk -v me="$$" '$1 == me {t += $16 + $17; next} {t += $14 + $15} END {print t + 0}')
    awk -v o="$ours" '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, o}' /proc/stat
}
other_cpu() { # other_cpu MARK_BEFORE MARK_AFTER: % of all CPUs busy with processes not ours
    awk -v a="$1" -v b="$2" 'BEGIN {split(a, x); split(b, y)
        v = 100 * ((y[1] - x[1]) - (y[3] - x[3])) / (y[2] - x[2]); printf "%.0f", (v > -0.5 && v < 0.5) ? 0 : v}'
}

# The cost of a request to one process, as opposed to the throughput the whole shared box
# reaches: CPU time it spent (all threads, user + system, in clock ticks) over requests served.
cpu_ticks() { # cpu_ticks PID
    awk '{print $14 + $15}' "/proc/$1/stat"
}

sim_profile() { # sim_profile PORT JSON
    curl -sSf --max-time 5 -X PATCH "http://127.0.0.1:$1/sim/profile" -d "$2" >/dev/null
}

echo "started=$(date -u +%FT%TZ)" >"$OUT/meta.txt"
{
    echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates 2>/dev/null || echo '+uncommitted')"
    echo "cpus=$(nproc)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "kernel=$(uname -r)"
    echo "nginx=$(nginx -v 2>&1 | cut -d/ -f2)"
    echo "wrk=$(wrk -v 2>&1 | head -1 | cut -d' ' -f2)"
    echo "python=$(python3 -V | cut -d' ' -f2)"
    if [[ $MODE == bookkeeping ]]; then
        echo "params=--bookkeeping DURATION=$DURATION REPEATS=$REPEATS CONNS=\"$CONNS\" WARMUP=$WARMUP USERS=$USERS"
    else
        echo "params=DURATION=$DURATION REPEATS=$REPEATS CONNS=\"$CONNS\" WARMUP=$WARMUP STREAM_REQUESTS=$STREAM_REQUESTS STREAMS=$STREAMS"
    fi
    echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >>"$OUT/meta.txt"

# --- safe-change bookkeeping (--bookkeeping only) --------------------------------------------
# Three gateways in front of the same sim: the benchmark's config ("plain"), the same plus a
# rollout at 50 %, an experiment at 50 % and a rule ("bookkeeping", benches/bookkeeping.toml.tmpl),
# and a second plain one ("plain-again"): plain-again vs plain is an A/A pair, so its ratio shows
# how far two identical gateways differ in this run, the floor under any bookkeeping figure.
# Every request carries its own user key (post-users.lua), for all three, so the splits hash a
# different key each time. The order rotates every round: the first run after an idle spell,
# or next to someone else's burst of work, is not always the same gateway's.
if [[ $MODE == bookkeeping ]]; then
    read -r SIM PL PL_ADMIN BK BK_ADMIN AA AA_ADMIN < <(free_ports 7)
    start_sim "$SIM"
    start_switchyard switchyard-plain "$PL" "$PL_ADMIN" warn "$SIM" "$WORK/switchyard-plain.log"
    PL_PID=$SY_PID
    start_switchyard switchyard-bookkeeping "$BK" "$BK_ADMIN" warn "$SIM" \
        "$WORK/switchyard-bookkeeping.log" "$BENCH/bookkeeping.toml.tmpl"
    BK_PID=$SY_PID
    start_switchyard switchyard-plain-again "$AA" "$AA_ADMIN" warn "$SIM" \
        "$WORK/switchyard-plain-again.log"
    AA_PID=$SY_PID
    OURS="$SIM_PID $PL_PID $BK_PID $AA_PID"
    TARGETS=("plain:$PL:$PL_PID:$PL_ADMIN" "bookkeeping:$BK:$BK_PID:$BK_ADMIN"
        "plain-again:$AA:$AA_PID:$AA_ADMIN")
    for t in "${TARGETS[@]}"; do
        IFS=: read -r name port _ <<<"$t"
        check_target "$name" "$port"
    done
    echo "clk_tck=$(getconf CLK_TCK)" >>"$OUT/meta.txt"
    MAX_CONNS=$(tr ' ' '\n' <<<"$CONNS" | sort -n | tail -1)
    for round in $(seq "$REPEATS"); do
        for i in $(seq 0 $((${#TARGETS[@]} - 1))); do
            IFS=: read -r name port pid _ <<<"${TARGETS[$(((i + round - 1) % ${#TARGETS[@]}))]}"
            url="http://127.0.0.1:$port/v1/chat/completions"
            log "round $round/$REPEATS: $name"
            timeout -k 5 $((WARMUP + 30)) wrk -t1 -c"$MAX_CONNS" -d"${WARMUP}s" \
                -s "$BENCH/post-users.lua" "$url" -- "$BENCH/chat.json" "$USERS" >/dev/null
            for c in $CONNS; do
                raw=$OUT/raw/wrk-$round-$name-c$c.txt
                before=$(cpu_mark $OURS)
                ticks=$(cpu_ticks "$pid")
                timeout -k 5 $((DURATION + 30)) wrk -t1 -c"$c" -d"${DURATION}s" --latency \
                    -s "$BENCH/post-users.lua" "$url" -- "$BENCH/chat.json" "$USERS" >"$raw"
                ticks=$(($(cpu_ticks "$pid") - ticks))
                other=$(other_cpu "$before" "$(cpu_mark $OURS)")
                line=$(grep '^BENCH ' "$raw") || die "no summary in $raw"
                echo "round=$round order=$((i + 1)) target=$name conns=$c other_cpu=$other" \
                    "cpu_ticks=$ticks ${line#BENCH }" | tee -a "$OUT/bookkeeping.txt" >&2
            done
        done
    done
    # What each gateway recorded: the report checks from these that the splits did split.
    for t in "${TARGETS[@]}"; do
        IFS=: read -r name _ _ admin <<<"$t"
        curl -sS --max-time 5 "http://127.0.0.1:$admin/metrics" >"$OUT/raw/$name-metrics.txt"
    done
    echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
    save_logs
    python3 "$BENCH/report.py" "$OUT" | tee "$OUT/results.md"
    exit 0
fi

# --- 1. throughput and latency, non-streaming ----------------------------------------------
read -r SIM SY SY_ADMIN SYL SYL_ADMIN NGX NGX_LOG NGX_SSE < <(free_ports 8)
start_sim "$SIM"
start_switchyard switchyard "$SY" "$SY_ADMIN" warn "$SIM" "$WORK/switchyard.log"
SY_MAIN_PID=$SY_PID
start_switchyard switchyard-log "$SYL" "$SYL_ADMIN" info "$SIM" /dev/null
start_nginx nginx "$SIM" "$NGX" "$NGX_LOG" "$NGX_SSE"
NGX_MAIN_PID=$NGX_PID
OURS="$SIM_PID $SY_MAIN_PID $SY_PID ${NGX_PIDS//,/ }"
TARGETS=("direct:$SIM" "switchyard:$SY" "switchyard+log:$SYL" "nginx:$NGX" "nginx+log:$NGX_LOG")
for t in "${TARGETS[@]}"; do check_target "${t%%:*}" "${t##*:}"; done

MAX_CONNS=$(tr ' ' '\n' <<<"$CONNS" | sort -n | tail -1)
throughput() { # throughput BODY TAG TARGET...: per round, each target warmed up, then wrk at each
               # connection count; raw output in raw/wrk-TAG..., one summary line each in
               # wrk-TAG.txt (TAG: empty for JSON, "stream-" for streams)
    local body=$1 tag=$2 round t name url c raw before other line
    shift 2
    for round in $(seq "$REPEATS"); do
        for t in "$@"; do
            name=${t%%:*}; url="http://127.0.0.1:${t##*:}/v1/chat/completions"
            log "round $round/$REPEATS: $name${tag:+, streamed}"
            timeout -k 5 $((WARMUP + 30)) wrk -t1 -c"$MAX_CONNS" -d"${WARMUP}s" \
                -s "$BENCH/post.lua" "$url" -- "$body" >/dev/null
            for c in $CONNS; do
                raw=$OUT/raw/wrk-$tag$round-$name-c$c.txt
                before=$(cpu_mark $OURS)
                timeout -k 5 $((DURATION + 30)) wrk -t1 -c"$c" -d"${DURATION}s" --latency \
                    -s "$BENCH/post.lua" "$url" -- "$body" >"$raw"
                other=$(other_cpu "$before" "$(cpu_mark $OURS)")
                line=$(grep '^BENCH ' "$raw") || die "no summary in $raw"
                echo "round=$round target=$name conns=$c other_cpu=$other ${line#BENCH }" |
                    tee -a "$OUT/wrk${tag:+-${tag%-}}.txt" >&2
            done
        done
    done
}
throughput "$BENCH/chat.json" "" "${TARGETS[@]}"
curl -sS --max-time 5 "http://127.0.0.1:$SY_ADMIN/metrics" >"$OUT/raw/switchyard-metrics.txt"
echo "load_after_throughput=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"

# --- 1b. throughput and latency, streamed (the sim's instant stream: 12 SSE events at once) --
# The same request with "stream": true and include_usage; nginx on its unbuffered SSE server.
STREAM_BODY=$WORK/chat-stream.json
python3 - "$BENCH/chat.json" "$STREAM_BODY" <<'PY'
import json, sys
body = json.load(open(sys.argv[1]))
body["stream"] = True
body["stream_options"] = {"include_usage": True}
json.dump(body, open(sys.argv[2], "w"))
PY
STREAM_TARGETS=("direct:$SIM" "switchyard:$SY" "nginx:$NGX_SSE")
throughput "$STREAM_BODY" stream- "${STREAM_TARGETS[@]}"
echo "load_after_stream_throughput=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"

# --- 2. streaming: time to first byte ------------------------------------------------------
log "streaming TTFB"
# completion_tokens caps the chunk count (one word per chunk at least), so raise it to match
sim_profile "$SIM" '{"ttfb_ms":0,"chunk_interval_ms":10,"stream_chunks":20,"completion_tokens":20}'
for t in "direct:$SIM" "switchyard:$SY" "nginx:$NGX_SSE"; do
    for conc in 1 16; do
        port=${t##*:}
        timeout 120 python3 "$BENCH/stream_client.py" ttfb --port "$port" --label warmup \
            --requests 10 --concurrency "$conc" >/dev/null
        before=$(cpu_mark $OURS)
        timeout 600 python3 "$BENCH/stream_client.py" ttfb --port "$port" --label "${t%%:*}" \
            --requests "$STREAM_REQUESTS" --concurrency "$conc" >"$OUT/raw/ttfb.json"
        other=$(other_cpu "$before" "$(cpu_mark $OURS)")
        sed "s/}\$/, \"other_cpu\": $other}/" "$OUT/raw/ttfb.json" | tee -a "$OUT/stream.jsonl" >&2
    done
done
echo "load_after_streaming=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
stop "$SY_MAIN_PID"; stop "$SY_PID"; stop "$NGX_MAIN_PID"

# --- 3. held streams: resident memory per open SSE stream (fresh proxies) ------------------
sim_profile "$SIM" '{"ttfb_ms":0,"chunk_interval_ms":1000,"stream_chunks":600,"completion_tokens":600}'
read -r SY SY_ADMIN NGX NGX_LOG NGX_SSE < <(free_ports 5)
log "held streams: switchyard, $STREAMS streams"
start_switchyard switchyard-held "$SY" "$SY_ADMIN" warn "$SIM" "$WORK/switchyard-held.log"
timeout 900 python3 "$BENCH/stream_client.py" hold --port "$SY" --label switchyard \
    --streams "$STREAMS" --pids "$SY_PID" --sim-port "$SIM" | tee -a "$OUT/held.jsonl" >&2
echo "load_after_held_switchyard=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
stop "$SY_PID"
log "held streams: nginx, $STREAMS streams"
start_nginx nginx-held "$SIM" "$NGX" "$NGX_LOG" "$NGX_SSE"
timeout 900 python3 "$BENCH/stream_client.py" hold --port "$NGX_SSE" --label nginx \
    --streams "$STREAMS" --pids "$NGX_PIDS" --sim-port "$SIM" | tee -a "$OUT/held.jsonl" >&2
stop "$NGX_PID"

echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
save_logs
python3 "$BENCH/report.py" "$OUT" | tee "$OUT/results.md"
