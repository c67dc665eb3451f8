#!/usr/bin/env bash
# Stop what tests/slurm/start_cluster.sh [DIR] started: its jobs, slurmd, slurmctld,
# and munged if that script started it. Processes are found by the pid files in DIR.
set -uo pipefail

DIR=${1:-${BATCHLIB_SLURM_DIR:-/tmp/batchlib-slurm}}
[ -d "$DIR" ] || exit 0
export SLURM_CONF=$DIR/slurm.conf

# Jobs first, so that no worker outlives the cluster.
if [ -f "$SLURM_CONF" ] && command -v scancel >/dev/null; then
    timeout 10 scancel --full --quiet --partition debug 2>/dev/null || true
fi

stop() {  # stop <pid file>: TERM, then KILL after 10 s
    local pidfile=$1 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

stop "$DIR/slurmd.pid"
stop "$DIR/slurmctld.pid"
if [ -f "$DIR/munged.ours" ]; then
    stop "$(cat "$DIR/munged.ours")"
    rm -f "$DIR/munged.ours"
fi
exit 0
