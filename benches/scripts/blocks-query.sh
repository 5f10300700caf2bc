#!/usr/bin/env bash
# Peak memory and time of two 30-day queries over 100,000 series held in blocks, for one or more
# strata binaries on the same data directory.
#
# usage: benches/scripts/blocks-query.sh DATA_DIR STRATA_BENCH LOADER_STRATA STRATA...
#   DATA_DIR       created and filled (30 days, 1 sample per hour, 100k series) if it does not exist
#   STRATA_BENCH   a strata-bench binary
#   LOADER_STRATA  the strata binary that ingests and compacts the data
#   STRATA...      the binaries measured, each started fresh for each query
# Prints one line per binary and query: HTTP code, peak anonymous and file-backed RSS sampled every
# 50 ms, VmHWM, and wall time.
set -euo pipefail
DATA=$1; BENCH=$2; LOADER=$3; shift 3
PORT=${PORT:-19190}
url="http://127.0.0.1:$PORT"
# 24h blocks: 30 head compactions instead of 360, and no compaction while measuring.
FLAGS=(--storage.tsdb.min-block-duration=24h --storage.tsdb.retention.time=0 --query.max-samples=500000000)
start() {
  "$1" --storage.tsdb.path="$DATA" --web.listen-address=127.0.0.1:$PORT "${FLAGS[@]}" >"$DATA.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do curl -sf "$url/-/ready" >/dev/null && return 0; sleep 0.5; done
  echo "not ready"; tail -5 "$DATA.log"; exit 1
}
stop() { kill -TERM "$PID"; wait "$PID" || true; }
if [ ! -d "$DATA" ]; then
  start "$LOADER"
  "$BENCH" load --url "$url/api/v1/write" --metrics 1 --series-per-metric 100000 --interval 1h --span 30d \
    --connections 1 --batch 2000
  # Compaction has settled when the directory stops changing for 20 s.
  prev=""; stable=0
  while [ $stable -lt 10 ]; do cur=$(ls "$DATA"); if [ "$cur" = "$prev" ]; then stable=$((stable+1)); else stable=0; fi; prev=$cur; sleep 2; done
  stop
fi
END=$(date +%s)
for BIN in "$@"; do
  for q in instant range; do
    start "$BIN"; sleep 1
    ( pa=0; pf=0
      while kill -0 "$PID" 2>/dev/null; do
        a=$(awk '/RssAnon/{print $2}' /proc/$PID/status 2>/dev/null || echo 0)
        f=$(awk '/RssFile/{print $2}' /proc/$PID/status 2>/dev/null || echo 0)
        [ "${a:-0}" -gt $pa ] && pa=$a; [ "${f:-0}" -gt $pf ] && pf=$f
        echo "$pa $pf" > "$DATA.peak"; sleep 0.05
      done ) &
    POLL=$!
    t0=$(date +%s.%N)
    if [ $q = instant ]; then
      code=$(curl -s -o /dev/null -w '%{http_code}' "$url/api/v1/query" \
        --data-urlencode 'query=count_over_time(node_cpu_seconds_total[30d])' --data-urlencode "time=$END")
    else
      code=$(curl -s -o /dev/null -w '%{http_code}' "$url/api/v1/query_range" \
        --data-urlencode 'query=sum by (job) (rate(node_cpu_seconds_total[2h]))' \
        --data-urlencode "start=$((END - 30 * 86400))" --data-urlencode "end=$END" --data-urlencode "step=3600")
    fi
    t1=$(date +%s.%N)
    sleep 0.2; read -r pa pf < "$DATA.peak"
    echo "$BIN $q code=$code peak_anon_kib=$pa peak_file_kib=$pf vmhwm_kib=$(awk '/VmHWM/{print $2}' /proc/$PID/status) seconds=$(echo "$t1 - $t0" | bc)"
    stop; wait "$POLL" 2>/dev/null || true
  done
done
