# shellcheck shell=bash
# The two-node test cluster of `local-cluster.sh start|status|stop --nodes 2` (sourced by it:
# install_packages, start_munge, log come from there).
#
# Two network namespaces, sl2n1 and sl2n2, stand for two machines: each has its own loopback
# and an eth0 (one end of a veth pair) with its own address, 10.231.0.2 and 10.231.0.3; the
# other ends are ports of the bridge sl2br0 in the root namespace, which holds 10.231.0.1, the
# controller's address. One slurmd runs in each namespace, also in its own UTS namespace whose
# hostname is the node's name (as on a real cluster, where torchrun and gloo find a node's
# address from its hostname); slurmctld runs in the root namespace. munge is shared: its socket
# is a file. So a job's processes on node K live in namespace K, and traffic between the nodes
# (srun's I/O, torchrun's c10d rendezvous, gloo's all-reduce) crosses the bridge.
#
# It coexists with the one-node cluster: its own config ($CONF2, used through SLURM_CONF), its
# own ClusterName, ports (6917/6918), state and pid files. Client commands need the config:
#   SLURM_CONF=/etc/slurm-2node/slurm.conf sinfo
# `start --nodes 2` is idempotent; `stop --nodes 2` stops its daemons and removes the
# namespaces and the bridge (state and logs are kept in $STATE2).

STATE2=/var/lib/speedlab-slurm-2node
RUN2=/run/speedlab-slurm-2node
BRIDGE2=sl2br0
NET2=10.231.0                  # /24: .1 the bridge (slurmctld), .2 and .3 the nodes
NODES2=(sl2n1 sl2n2)           # node names = namespace names = their hostnames
CTLD2_HOST=$(hostname -s)      # slurmctld checks that it runs on SlurmctldHost
PARTITION2=debug

node_addr() { echo "$NET2.$(($1 + 2))"; } # node index (0, 1) -> address
# in_node NAME CMD...: run inside that node's network and UTS namespaces, and a mount namespace
# of its own where /etc/slurm is $CONF2's folder: there, as on a real node, every SLURM command
# finds the cluster's config at the default path. (The SLURM plugin's job step drops SLURM_CONF
# from the environment of the command it runs; without this, the srun inside a job would read
# the one-node cluster's config.) nsenter, not `ip netns exec`, which also remounts /sys and
# hides /sys/fs/cgroup, which slurmd needs.
in_node() {
    local name=$1
    shift
    nsenter --net="/run/netns/$name" --uts="$RUN2/$name.uts" \
        unshare --mount --propagation private \
        sh -c 'mount --bind "$0" /etc/slurm && exec "$@"' "$(dirname "$CONF2")" "$@"
}

two_hosts() {
    local i line
    for i in "${!NODES2[@]}"; do
        line="$(node_addr "$i") ${NODES2[$i]}"
        grep -qxF "$line" /etc/hosts || {
            log "adding '$line' to /etc/hosts"
            echo "$line" >>/etc/hosts
        }
    done
}

# The bridge, the namespaces and their links; each piece is made only if missing.
two_network() {
    local i name
    if ! ip link show "$BRIDGE2" >/dev/null 2>&1; then
        log "creating bridge $BRIDGE2 ($NET2.1/24)"
        ip link add "$BRIDGE2" type bridge
        ip addr add "$NET2.1/24" dev "$BRIDGE2"
    fi
    ip link set "$BRIDGE2" up
    mkdir -p "$RUN2"
    for i in "${!NODES2[@]}"; do
        name=${NODES2[$i]}
        if ! ip netns list | grep -qw "^$name"; then
            log "creating network namespace $name ($(node_addr "$i"))"
            ip netns add "$name"
        fi
        if ! ip link show "v$name" >/dev/null 2>&1; then
            ip link add "v$name" type veth peer name "p$name"
            ip link set "p$name" netns "$name"
            ip -n "$name" link set "p$name" name eth0
            ip -n "$name" addr add "$(node_addr "$i")/24" dev eth0
        fi
        ip link set "v$name" master "$BRIDGE2" up
        ip -n "$name" link set lo up
        ip -n "$name" link set eth0 up
        # A UTS namespace with the node's hostname, kept alive by a bind mount of it.
        if ! nsenter --uts="$RUN2/$name.uts" true 2>/dev/null; then
            touch "$RUN2/$name.uts"
            unshare --uts="$RUN2/$name.uts" hostname "$name"
        fi
    done
}

two_render_config() {
    local cpus mem i
    cpus=$(nproc)
    mem=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
    mem=$((mem > 4096 ? (mem - 2048) / 2 : mem / 2)) # the machine's memory, split in two
    cat <<EOC
# Written by speedlab's scripts/slurm/local-cluster.sh --nodes 2: a two-node test cluster in
# network namespaces (see scripts/slurm/two-node.sh).
ClusterName=speedlab2n
SlurmctldHost=$CTLD2_HOST($NET2.1)
StateSaveLocation=$STATE2/ctld
SlurmdSpoolDir=$STATE2/d/%n
SlurmctldPidFile=$RUN2/slurmctld.pid
SlurmdPidFile=$RUN2/slurmd-%n.pid
SlurmctldLogFile=$STATE2/slurmctld.log
SlurmdLogFile=$STATE2/slurmd-%n.log
SlurmctldPort=6917
SlurmdPort=6918
EOC
    shared_settings $((mem / cpus))
    for i in "${!NODES2[@]}"; do
        echo "NodeName=${NODES2[$i]} NodeAddr=$(node_addr "$i") CPUs=$cpus RealMemory=$mem State=UNKNOWN"
    done
    echo "PartitionName=$PARTITION2 Nodes=$(
        IFS=,
        echo "${NODES2[*]}"
    ) Default=YES MaxTime=INFINITE State=UP"
}

# Writes $CONF2 if it differs; returns 0 if it changed.
two_write_config() {
    local name
    mkdir -p "$STATE2/ctld" "$RUN2" "$(dirname "$CONF2")" /etc/slurm
    for name in "${NODES2[@]}"; do mkdir -p "$STATE2/d/$name"; done
    write_if_changed "$CONF2" "$(two_render_config)"
}

# The live pid in a pid file of the two-node cluster (never by name: the one-node cluster's
# daemons have the same names).
two_pid() {
    local pid
    [[ -f "$RUN2/$1.pid" ]] || return 0
    pid=$(cat "$RUN2/$1.pid")
    if kill -0 "$pid" 2>/dev/null && grep -qF -- "$CONF2" "/proc/$pid/cmdline" 2>/dev/null; then
        echo "$pid"
    fi
}

two_stop_daemon() {
    kill_and_wait "$1" "$(two_pid "$1")"
}

two_show_logs() {
    local f
    for f in "$STATE2"/slurmctld.log "$STATE2"/slurmd-*.log; do
        echo "--- last lines of $f" >&2
        tail -n 25 "$f" >&2 2>/dev/null || echo "(missing)" >&2
    done
}

two_wait_idle() {
    local deadline=$((SECONDS + IDLE_TIMEOUT_S)) states="" want
    want=$(printf 'idle\n%.0s' "${NODES2[@]}")
    while ((SECONDS < deadline)); do
        states=$(sinfo -h -N -o '%t' 2>/dev/null | sed 's/[*~#]$//' || true)
        if [[ "$(grep -cE '^(idle|mix|alloc|comp)$' <<<"$states")" == "${#NODES2[@]}" ]]; then
            return 0
        fi
        if grep -qE '^(down|drain|fail)' <<<"$states"; then
            scontrol update nodename="$(
                IFS=,
                echo "${NODES2[*]}"
            )" state=resume >/dev/null 2>&1 || true
        fi
        sleep 0.5
    done
    log "ERROR: nodes not idle after ${IDLE_TIMEOUT_S} s (states: ${states:-no answer}; want $want)"
    sinfo -N -l >&2 || true
    two_show_logs
    exit 1
}

two_start() {
    local name
    [[ $EUID -eq 0 ]] || {
        log "ERROR: must run as root"
        exit 1
    }
    install_packages
    if ! command -v ip >/dev/null || ! command -v nsenter >/dev/null; then
        log "installing iproute2 and util-linux (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 util-linux >/dev/null
    fi
    start_munge
    two_hosts
    two_network
    export SLURM_CONF=$CONF2
    if two_write_config && [[ -n "$(two_pid slurmctld)$(two_pid slurmd-sl2n1)$(two_pid slurmd-sl2n2)" ]]; then
        log "$CONF2 changed: restarting the two-node cluster's daemons"
        for name in "${NODES2[@]}"; do two_stop_daemon "slurmd-$name"; done
        two_stop_daemon slurmctld
    fi
    if [[ -z "$(two_pid slurmctld)" ]]; then
        slurmctld -f "$CONF2" || {
            two_show_logs
            exit 1
        }
    fi
    for name in "${NODES2[@]}"; do
        if [[ -z "$(two_pid "slurmd-$name")" ]]; then
            in_node "$name" slurmd -f "$CONF2" -N "$name" || {
                two_show_logs
                exit 1
            }
        fi
    done
    two_wait_idle
    # Both nodes run a step, each in its own namespace (its hostname is the node's).
    local hosts
    hosts=$(timeout 60 srun -N2 -n2 --ntasks-per-node=1 hostname 2>&1 | sort | tr '\n' ' ') || true
    if [[ "$hosts" != "sl2n1 sl2n2 " ]]; then
        log "ERROR: a two-node step printed '$hosts' (want 'sl2n1 sl2n2')"
        two_show_logs
        exit 1
    fi
    log "$(sinfo -V) two-node cluster up (SLURM_CONF=$CONF2): $(sinfo -h -N -o '%N %t %c CPUs %m MB' | tr '\n' ';') partition $PARTITION2"
}

two_stop() {
    local name
    export SLURM_CONF=$CONF2
    for name in "${NODES2[@]}"; do two_stop_daemon "slurmd-$name"; done
    two_stop_daemon slurmctld
    for name in "${NODES2[@]}"; do
        if [[ -f "$RUN2/$name.uts" ]]; then
            umount "$RUN2/$name.uts" 2>/dev/null || true
            rm -f "$RUN2/$name.uts"
        fi
        ip netns del "$name" 2>/dev/null || true
        ip link del "v$name" 2>/dev/null || true
    done
    ip link del "$BRIDGE2" 2>/dev/null || true
    # munged stays: the one-node cluster may be using it.
    log "two-node cluster stopped (state and logs kept in $STATE2)"
}

two_status() {
    export SLURM_CONF=$CONF2
    sinfo -V
    scontrol ping
    sinfo -N -l
    squeue
}
