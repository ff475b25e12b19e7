#!/usr/bin/env bash
# A real one-node SLURM on this machine, for tests and CI: Debian's slurm-wlm and munge, the
# node on 127.0.0.1, no accounting database, no GPUs. Needs root (it installs packages and starts
# daemons); works in containers without systemd.
#
#   scripts/slurm/local-cluster.sh start    # install if missing, configure, start, wait for idle
#   scripts/slurm/local-cluster.sh status   # sinfo + squeue
#   scripts/slurm/local-cluster.sh stop     # stop the daemons (state is kept)
#
# Without slurmdbd there is no sacct: snakemake's SLURM plugin must poll with squeue
# (profiles/slurm sets slurm-status-command: squeue), and MinJobAge keeps finished jobs visible
# to squeue for 10 minutes so their final state can be read.
set -euo pipefail

STATE=/var/lib/speedlab-slurm
RUN=/run/speedlab-slurm
CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)

log() { echo "local-cluster: $*" >&2; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || true
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

start_munge() {
    if munge -n </dev/null >/dev/null 2>&1 && munge -n | unmunge >/dev/null 2>&1; then
        return
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        mungekey --create --force 2>/dev/null ||
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.1
    done
    log "munged did not come up"
    exit 1
}

write_config() {
    # The node's real shape (sockets, cores, memory) as slurmd sees it, so the node is not
    # drained for claiming more than it has; keep 1 GiB of memory for the rest of the machine.
    local shape mem
    shape=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//')
    mem=$(slurmd -C | head -1 | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    mem=$((mem > 2048 ? mem - 1024 : mem))
    mkdir -p "$STATE/ctld" "$STATE/d" "$RUN" /etc/slurm
    cat >"$CONF" <<EOF
# Written by speedlab's scripts/slurm/local-cluster.sh: a one-node test cluster.
ClusterName=speedlab
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# No cgroups in a container: track processes by parent pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
# One CPU and its memory per task, so single-CPU jobs run side by side.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# No slurmdbd: no accounting, no sacct (status comes from squeue).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay in squeue for 10 minutes; scancel/timeout: SIGTERM, then SIGKILL after 5 s.
MinJobAge=600
KillWait=5
ReturnToService=2
SchedulerType=sched/backfill
NodeName=$NODE NodeAddr=127.0.0.1 $shape RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

running() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

wait_idle() {
    for _ in $(seq 120); do
        if sinfo -h -N -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; then
            return
        fi
        # A node left down/drained from an earlier life: bring it back.
        scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
        sleep 0.5
    done
    log "the node did not become idle; sinfo says: $(sinfo -N 2>&1 | tail -1)"
    tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
    exit 1
}

start() {
    install_packages
    start_munge
    write_config
    running slurmctld || slurmctld
    running slurmd || slurmd -N "$NODE"
    wait_idle
    log "$(sinfo -V) up: $(sinfo -h -N -o '%N %t %c CPUs %m MB')"
}

stop() {
    for daemon in slurmd slurmctld; do
        if running "$daemon"; then
            kill "$(cat "$RUN/$daemon.pid")"
        fi
    done
    for _ in $(seq 50); do
        running slurmd || running slurmctld || break
        sleep 0.1
    done
    log "stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status)
    sinfo
    squeue
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
