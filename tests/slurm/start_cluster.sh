#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the tests and by hand.
#
#   sudo tests/slurm/start_cluster.sh [DIR]     # default DIR: $BATCHLIB_SLURM_DIR or /tmp/batchlib-slurm
#   export SLURM_CONF=DIR/slurm.conf            # then sbatch, squeue, sacct -c ... talk to it
#   sudo tests/slurm/stop_cluster.sh [DIR]
#
# Needs the Debian packages slurm-wlm and munge (apt-get install -y slurm-wlm munge)
# and root (slurmd starts the jobs). Starts munged (unless one answers already),
# slurmctld and slurmd with a minimal slurm.conf written to DIR: one node (this
# host, at 127.0.0.1) with this machine's cores and memory, one partition
# "debug", no accounting database: finished jobs are listed by `sacct -c`
# (job completion log DIR/jobcomp.log). Ports: $SLURMCTLD_PORT (6817) and
# $SLURMD_PORT (6818). Exits 0 once the node is idle, 1 (saying why) otherwise.
set -euo pipefail

DIR=${1:-${BATCHLIB_SLURM_DIR:-/tmp/batchlib-slurm}}
CTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}

fail() { echo "start_cluster: $*" >&2; exit 1; }

for cmd in munged munge slurmctld slurmd sinfo sbatch; do
    command -v "$cmd" >/dev/null || fail "$cmd not found (apt-get install -y slurm-wlm munge)"
done
[ "$(id -u)" = 0 ] || fail "must run as root (slurmd starts the jobs); try sudo"

mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
DIR=$(cd "$DIR" && pwd)

# munge: the authentication Slurm's daemons and commands share.
if ! munge -n </dev/null >/dev/null 2>&1; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    if id munge >/dev/null 2>&1; then
        chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
        chmod 700 /etc/munge && chmod 600 /etc/munge/munge.key
        runuser -u munge -- munged --pid-file=/run/munge/batchlib-munged.pid || fail "munged did not start"
    else
        munged --force --pid-file=/run/munge/batchlib-munged.pid || fail "munged did not start"
    fi
    echo /run/munge/batchlib-munged.pid > "$DIR/munged.ours"  # stop_cluster.sh stops it
    for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n </dev/null >/dev/null 2>&1 || fail "munged does not answer"
fi

HOST=$(hostname -s)
CPUS=$(nproc)
# All but 512 MB of the memory (at least 1 GB) is the node's to give.
MEM_MB=$(awk '/MemTotal/ {m = int($2 / 1024) - 512; print (m < 1024 ? 1024 : m)}' /proc/meminfo)

cat > "$DIR/slurm.conf" <<EOF
# Written by tests/slurm/start_cluster.sh: one node, this machine.
ClusterName=batchlib
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
DefMemPerCPU=1024
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
# Quick turnaround for short test jobs.
MinJobAge=30
KillWait=5
SchedulerParameters=bf_interval=1
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$DIR/slurm.conf

slurmctld -f "$SLURM_CONF" -i || fail "slurmctld did not start (see $DIR/log/slurmctld.log)"
slurmd -f "$SLURM_CONF" || fail "slurmd did not start (see $DIR/log/slurmd.log)"

for _ in $(seq 120); do
    state=$(sinfo -h -N -o %t 2>/dev/null | head -n1 || true)
    case "$state" in
        idle|mix|alloc) echo "Slurm is up: node $HOST, $CPUS CPUs, $MEM_MB MB (partition debug)"
                        echo "export SLURM_CONF=$SLURM_CONF"; exit 0 ;;
        down*|drain*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
tail -n 5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
fail "the node did not become idle within 60 s (state: ${state:-none})"
