#!/usr/bin/env bash
# A real one-node SLURM on this machine, for tests and CI: Debian's slurm-wlm and munge, the
# node on 127.0.0.1, no accounting database, no GPUs. Needs root (it installs packages and starts
# daemons); works in containers without systemd (the daemons are started directly).
#
#   scripts/slurm/local-cluster.sh start    # install if missing, configure, start, wait for idle
#   scripts/slurm/local-cluster.sh status   # sinfo + squeue
#   scripts/slurm/local-cluster.sh stop     # stop the daemons (state and logs are kept)
#   scripts/slurm/local-cluster.sh start|status|stop --nodes 2   # the two-node cluster (below)
#
# `start` is idempotent: running daemons are left alone, unless slurm.conf had to change (then
# they are restarted; running jobs survive that). The config is Debian's default path,
# /etc/slurm/slurm.conf, so sbatch/squeue/sinfo/scancel work for any process without SLURM_CONF.
# State, spool and logs live in $STATE: look at slurmctld.log and slurmd.log there.
#
# Without slurmdbd there is no sacct (it answers "Slurm accounting storage is disabled"), so
# snakemake's SLURM plugin must poll with squeue (profiles/slurm sets slurm-status-command:
# squeue), and MinJobAge keeps finished jobs visible to squeue for 10 minutes so that their
# final state (COMPLETED, FAILED, CANCELLED, TIMEOUT) can still be read.
set -euo pipefail

STATE=/var/lib/speedlab-slurm # StateSaveLocation, slurmd spool, logs
RUN=/run/speedlab-slurm       # pid files
CONF=/etc/slurm/slurm.conf    # where Debian's binaries look without SLURM_CONF
NODE=$(hostname -s)           # slurmd registers under this name (slurmd -N)
PARTITION=debug
IDLE_TIMEOUT_S=60
CONF2=/etc/slurm-2node/slurm.conf # the two-node cluster's (scripts/slurm/two-node.sh)

log() { echo "local-cluster: $*" >&2; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || log "apt-get update failed; trying the install anyway"
    # Debian's postinst scripts may try to start the services and fail without systemd or a
    # config: that is harmless, the daemons are started below.
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

# The node's name must resolve (slurmd, srun and slurmctld look it up); containers sometimes
# have a hostname that nothing resolves. Map it to the loopback address in that case.
ensure_hostname_resolves() {
    if ! getent hosts "$NODE" >/dev/null; then
        log "hostname $NODE does not resolve: adding '127.0.0.1 $NODE' to /etc/hosts"
        echo "127.0.0.1 $NODE" >>/etc/hosts
    fi
}

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then
        return
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        mkdir -p /etc/munge
        mungekey --create --force 2>/dev/null ||
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    # A munged that died leaves its socket and pid file behind; --force starts over them.
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do
        munge_works && return
        sleep 0.1
    done
    log "munged did not come up; see /var/log/munge/munged.log"
    exit 1
}

# The settings both test clusters share (sourced by two-node.sh too): root runs the daemons,
# munge authenticates, no cgroups, CPUs and memory consumed, no accounting. $1: DefMemPerCPU.
shared_settings() {
    cat <<EOF
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
SwitchType=switch/none
# No cgroups assumed (containers): track processes by parent pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# CPUs and memory are what jobs consume: two 1-CPU jobs run side by side. A job that asks for
# no memory gets DefMemPerCPU per CPU (without it, it would get the whole node's memory and run
# alone). The node is taken as configured (nproc CPUs), whatever the hardware says.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$1
SlurmdParameters=config_overrides
# No slurmdbd: no accounting and no sacct (job status comes from squeue).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay in squeue for 10 minutes. scancel and time limits send SIGTERM, then
# SIGKILL 5 s later.
MinJobAge=600
KillWait=5
# A node that was down (daemons restarted) comes back by itself once slurmd registers.
ReturnToService=2
SchedulerType=sched/backfill
MailProg=/bin/true
EOF
}

# Prints the config for this machine: one node with all its CPUs (nproc) and its memory less a
# margin, one default partition.
render_config() {
    local cpus mem
    cpus=$(nproc)
    mem=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
    # Keep 1 GiB (or, on tiny machines, nothing) for the OS and the daemons.
    mem=$((mem > 2048 ? mem - 1024 : mem))
    cat <<EOF
# Written by speedlab's scripts/slurm/local-cluster.sh: a one-node test cluster.
ClusterName=speedlab
SlurmctldHost=$NODE(127.0.0.1)
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
EOF
    shared_settings $((mem / cpus))
    cat <<EOF
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

# Writes the config if it differs from the one in place; returns 0 if it changed.
write_config() {
    local new
    mkdir -p "$STATE/ctld" "$STATE/d" "$RUN" "$(dirname "$CONF")"
    new=$(render_config)
    if [[ -f "$CONF" ]] && [[ "$(cat "$CONF")" == "$new" ]]; then
        return 1
    fi
    log "writing $CONF"
    printf '%s\n' "$new" >"$CONF"
}

# Is the daemon running? By its pid file, or (started by hand) by its name.
pid_of() {
    local pid
    if [[ -f "$RUN/$1.pid" ]]; then
        pid=$(cat "$RUN/$1.pid")
        if kill -0 "$pid" 2>/dev/null; then
            echo "$pid"
            return
        fi
    fi
    # (not the two-node cluster's daemons: they run with -f $CONF2)
    for pid in $(pgrep -x "$1"); do
        grep -qF -- "$CONF2" "/proc/$pid/cmdline" 2>/dev/null || {
            echo "$pid"
            return
        }
    done
}

stop_daemon() {
    kill_and_wait "$1" "$(pid_of "$1" || true)"
}

# kill_and_wait NAME PID: SIGTERM, then up to 10 s for the process to go (nothing if no PID).
kill_and_wait() {
    local pid=$2
    [[ -n "$pid" ]] || return 0
    kill "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "$1 (pid $pid) did not stop within 10 s"
    return 1
}

show_logs() {
    for f in "$STATE/slurmctld.log" "$STATE/slurmd.log"; do
        echo "--- last lines of $f" >&2
        tail -n 25 "$f" >&2 2>/dev/null || echo "(missing)" >&2
    done
}

wait_idle() {
    local deadline=$((SECONDS + IDLE_TIMEOUT_S)) state=""
    while ((SECONDS < deadline)); do
        state=$(sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null || true)
        case "$state" in
        # slurmctld may report the node idle from its saved state before slurmd has
        # registered: also ask the local slurmd itself.
        idle | mix | alloc | comp)
            scontrol show slurmd >/dev/null 2>&1 && return 0
            ;;
        # Left down or drained by an earlier life of the cluster: bring it back.
        down* | drain* | fail*)
            scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
            ;;
        esac
        sleep 0.5
    done
    log "ERROR: node $NODE not idle after ${IDLE_TIMEOUT_S} s (state: '${state:-no answer}')"
    sinfo -N -l >&2 || true
    show_logs
    exit 1
}

start() {
    [[ $EUID -eq 0 ]] || {
        log "ERROR: must run as root"
        exit 1
    }
    install_packages
    ensure_hostname_resolves
    start_munge
    if write_config && [[ -n "$(pid_of slurmctld)$(pid_of slurmd)" ]]; then
        log "slurm.conf changed: restarting the daemons"
        stop_daemon slurmd
        stop_daemon slurmctld
    fi
    if [[ -z "$(pid_of slurmctld)" ]]; then
        slurmctld || {
            show_logs
            exit 1
        }
    fi
    if [[ -z "$(pid_of slurmd)" ]]; then
        slurmd -N "$NODE" || {
            show_logs
            exit 1
        }
    fi
    wait_idle
    log "$(sinfo -V) up: node $NODE $(sinfo -h -N -o '%t, %c CPUs, %m MB'), partition $PARTITION"
}

stop() {
    stop_daemon slurmd
    stop_daemon slurmctld
    # munged was started by `start` too (and nothing else here uses it).
    if [[ -f /run/munge/munged.pid ]]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
    fi
    log "stopped (state and logs kept in $STATE)"
}

status() {
    sinfo -V
    scontrol ping
    sinfo -N -l
    squeue
}

case "${1:-} ${2:-} ${3:-}" in
"start  ") start ;;
"stop  ") stop ;;
"status  ") status ;;
"start --nodes 2" | "stop --nodes 2" | "status --nodes 2")
    # shellcheck source=scripts/slurm/two-node.sh
    source "$(dirname "${BASH_SOURCE[0]}")/two-node.sh"
    "two_$1"
    ;;
*)
    echo "usage: $0 start|stop|status [--nodes 2]" >&2
    exit 2
    ;;
esac
