#!/usr/bin/env bash
# Many venues: 8 tiny synthetic venues run into an S3-compatible object store (moto on localhost),
# three ways: `flythrough batch --jobs 1`, `--jobs 2`, and a 2-task Slurm job array on a local
# single-node cluster (scripts/cluster/slurm-local.sh; root only, skipped otherwise). Prints wall time
# and the object store's bytes moved per venue.
#
#   scripts/bench-batch.sh            # UNTIL=privacy by default; UNTIL=sfm etc. to go further
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
UNTIL="${UNTIL:-privacy}"
N=8
work="${BENCH_DIR:-/tmp/flythrough-bench-batch}"
rm -rf "$work"
mkdir -p "$work/venues"
bash scripts/setup-python-tools.sh >/dev/null
if [ -z "${FLYTHROUGH_BIN:-}" ]; then
  cargo build --release -q -p flythrough
fi
bin="${FLYTHROUGH_BIN:-$PWD/target/release/flythrough}"

echo "bench-batch: $N venues (8 photos of 96x72 each), --until $UNTIL; $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$work/venues.txt"
for i in $(seq 0 $((N - 1))); do
  "$bin" synth --out "$work/venues/v$i" --seed "$i" --images 8 --width 96 --height 72 >/dev/null
  sed -i "s/^name = \"synthetic-venue\"/name = \"v$i\"/" "$work/venues/v$i/venue.toml"
  echo "venues/v$i/venue.toml" >>"$work/venues.txt"
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m moto.server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
slurm_started=""
cleanup() {
  kill "$moto" 2>/dev/null || true
  if [ -n "$slurm_started" ]; then bash scripts/cluster/slurm-local.sh stop >/dev/null || true; fi
}
trap cleanup EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
curl -s -X PUT "http://127.0.0.1:$port/bench" >/dev/null
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
  AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true
export FLYTHROUGH_CACHE="$work/cache"

# row NAME SECONDS REPORT...
row() {
  local name=$1 secs=$2
  shift 2
  python3 - "$name" "$secs" "$N" "$@" <<'PY'
import json, sys
name, secs, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
vs = [v for f in sys.argv[4:] for v in json.load(open(f))["venues"]]
ok = sum(v["status"] == "ok" for v in vs)
up = sum(v.get("bytes_up") or 0 for v in vs) / max(len(vs), 1) / 1e6
down = sum(v.get("bytes_down") or 0 for v in vs) / max(len(vs), 1) / 1e6
print(f"| {name} | {secs:.1f} | {secs / n:.1f} | {ok}/{n} | {up:.2f} | {down:.2f} |")
PY
}

echo
echo "| how | wall s | s per venue | venues ok | MB up per venue | MB down per venue |"
echo "|---|---|---|---|---|---|"
for jobs in 1 2; do
  t0=$(date +%s.%N)
  (cd "$work" && "$bin" batch venues.txt --out "s3://bench/jobs$jobs/" --jobs "$jobs" --until "$UNTIL" \
    --quiet --report "$work/jobs$jobs.json" 2>"$work/jobs$jobs.log") || true
  t1=$(date +%s.%N)
  row "batch --jobs $jobs" "$(python3 -c "print($t1 - $t0)")" "$work/jobs$jobs.json"
done

if [ "$(id -u)" -eq 0 ] && bash scripts/cluster/slurm-local.sh start >"$work/slurm-start.log" 2>&1; then
  slurm_started=1
  t0=$(date +%s.%N)
  job=$(cd "$work" && sbatch --parsable --array=0-1 -c 1 --mem=2G --output="$work/slurm-%a.log" \
    --export="ALL,FLYTHROUGH_LIST=$work/venues.txt,FLYTHROUGH_OUT=s3://bench/slurm/,FLYTHROUGH_BIN=$bin,FLYTHROUGH_ARGS=--until $UNTIL --quiet" \
    "$repo/scripts/cluster/flythrough-array.sbatch")
  while [ -n "$(squeue -h -j "$job" 2>/dev/null)" ]; do sleep 0.5; done
  t1=$(date +%s.%N)
  row "Slurm array, 2 tasks" "$(python3 -c "print($t1 - $t0)")" "$work/batch-0-of-2.json" "$work/batch-1-of-2.json"
else
  echo "| Slurm array, 2 tasks | skipped: needs root and Debian's slurm-wlm (see $work/slurm-start.log) | | | | |"
fi
