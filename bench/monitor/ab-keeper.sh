#!/usr/bin/env bash
# Old and new StatKeeper criterion bench binaries alternating, pinned to CPU 1, thread CPU time:
#   bench/monitor/ab-keeper.sh OLD NEW [PAIRS] [CASE]
# OLD/NEW: copies of target/release/deps/statkeeper-<hash> built from two commits
# (`cargo bench -p httpscope-monitor --bench statkeeper --no-run`); CASE defaults to the
# monitor's path, statkeeper_thread_cpu/add_batch_warm_100k. Prints M transactions/s per pair.
set -eu
old=$1; new=$2; n=${3:-5}; w=${4:-statkeeper_thread_cpu/add_batch_warm_100k}
rate() { taskset -c 1 "$1" --bench --warm-up-time 1 --measurement-time 3 "$w" 2>&1 |
  grep -m1 thrpt | sed 's/ \+/ /g' | awk '{print $4}'; }
for i in $(seq 1 "$n"); do
  a=$(rate "$old"); b=$(rate "$new")
  echo "$i $w old $a new $b ratio $(echo "scale=3; $b/$a" | bc)"
done
