#!/usr/bin/env bash
# Issue 22's measurement, repeatable: `wdtpipe up` (lean sandbox WDT, console on, a fresh
# data directory) and the bare axum JSON-parse server run at once and are loaded in turn
# with wrk at 64 connections, PAIRS alternated pairs of SECONDS each, after a 5 s warm-up of
# each; then one light-load run against `up` (16 connections, 10 ms think time).
#
# Needs wrk (`apt-get install wrk`) and the release binaries:
#   cargo build --release -p wdtpipe --bin wdtpipe --example bare_json_server
# Usage, from the repo root: bench/up_vs_bare.sh [PAIRS] [SECONDS]   (default 5 pairs of 20 s)
# SCHEME=tests/fixtures/bench/ten-rules.toml maps every callback to `up` with that scheme
# (served alone from SCHEMES_DIR; callbacks to /v1/callback/<its id>).
# NULL_WDT=1 points `up` at the bare server's WDT stand-in, which answers every trade_push at
# once without parsing it (a remote WDT costs the relay nothing), instead of the in-process
# sandbox, which checks every call.
# Uses ports 8080–8090 as `wdtpipe up` does by default, and 8088 for the bare server.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-5}
seconds=${2:-20}
data=$(mktemp -d)
path=/v1/callback
if [ -n "${SCHEME:-}" ]; then
  mkdir "$data/schemes"
  cp "$SCHEME" "$data/schemes/"
  export SCHEMES_DIR="$data/schemes"
  path=/v1/callback/$(sed -n 's/^id = "\(.*\)"/\1/p' "$SCHEME")
fi
./target/release/examples/bare_json_server 127.0.0.1:8088 > /dev/null 2>&1 &
bare=$!
if [ -n "${NULL_WDT:-}" ]; then
  export WDT_URL=http://127.0.0.1:8088/openapi2 WDT_SID=bench WDT_APPKEY=bench WDT_APPSECRET=bench
fi
SANDBOX_LEAN=true DATA_DIR="$data" ./target/release/wdtpipe up > "$data/up.log" 2>&1 &
up=$!
trap 'kill -INT $up 2>/dev/null; kill $bare 2>/dev/null; wait $up 2>/dev/null; rm -rf "$data"' EXIT
sleep 3
load() { # URL DURATION [extra env] → the script's JSON line
  wrk -t2 -c"${CONNECTIONS:-64}" -d"$2" -s bench/fresh_tid.lua "$1" | sed -n 's/^JSON //p'
}
field() { # JSON KEY → value
  sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" <<< "$1"
}
load http://127.0.0.1:8080$path 5s > /dev/null
load http://127.0.0.1:8088/v1/callback 5s > /dev/null
echo "pair | up /s (p99 ms, errors) | bare /s (p99 ms) | ratio"
for i in $(seq "$pairs"); do
  u=$(load http://127.0.0.1:8080$path "${seconds}s")
  b=$(load http://127.0.0.1:8088/v1/callback "${seconds}s")
  ratio=$(awk -v u="$(field "$u" per_s)" -v b="$(field "$b" per_s)" 'BEGIN { printf "%.0f %%", 100 * u / b }')
  echo "$i | $(field "$u" per_s) ($(field "$u" p99_ms), $(field "$u" errors)) | $(field "$b" per_s) ($(field "$b" p99_ms)) | $ratio"
done
light=$(THINK_MS=10 CONNECTIONS=16 load http://127.0.0.1:8080$path "${seconds}s")
echo "light load (16 connections, 10 ms think): $(field "$light" per_s)/s, p50 $(field "$light" p50_ms) ms, p99 $(field "$light" p99_ms) ms, errors $(field "$light" errors)"
# Every callback acknowledged should have reached the WDT in use (a stand-in that refused
# them would make `up` look faster: retries cost less than deliveries).
metrics=$(sed -n 's/.*deliver .*metrics: \(http[^)]*\)).*/\1/p' "$data/up.log")
sleep 2
curl -s "$metrics" | awk '/^wdtpipe_deliver_delivered_trades_total /{d=$2} /^wdtpipe_deliver_outbox_queued_trades /{q=$2} /^wdtpipe_deliver_retries_total /{r=$2} END {printf "delivered to WDT: %d trades, %d still queued, %d retries\n", d, q, r}'
