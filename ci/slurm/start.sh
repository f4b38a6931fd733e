#!/usr/bin/env bash
# Start a throw-away single-node SLURM cluster on this machine, for tests and CI.
#
# Usage: ci/slurm/start.sh [STATE_DIR]
#
# STATE_DIR (default: $SEGROBUST_SLURM_DIR, else a new directory under /tmp) receives everything
# the cluster writes: slurm.conf, gres.conf, the munge key and socket, daemon logs, pid files,
# spool and state directories. STATE_DIR/env.sh exports SLURM_CONF=STATE_DIR/slurm.conf for
# clients. The one file outside STATE_DIR is a symlink /etc/slurm/slurm.conf -> STATE_DIR/slurm.conf
# (needed by Snakemake's nested srun, see below); start.sh refuses to run where that file already
# exists, so a real SLURM installation is never touched, and stop.sh removes the link. A link
# left by a test cluster that died without stop.sh (dangling, or into a state directory whose
# daemons are all gone) is replaced.
#
# What it does:
#   1. installs Debian's slurm-wlm and munge with apt-get when a command is missing (root only);
#   2. writes a slurm.conf for this host only: the node's real CPUs and memory (`slurmd -C`), two
#      partitions over it (the default one for CPU jobs and one for GPU jobs, as on clusters that
#      keep their GPU nodes apart), no accounting, no cgroups (proctrack/linuxproc, task/none),
#      select/cons_tres; finished jobs stay visible to `scontrol show job` for an hour
#      (MinJobAge), so a test can read the partition, GPUs and time limit they ran with;
#   3. advertises one GPU GRES slot backed by /dev/null (SLURM drops GPUs without a device file),
#      so a job submitted with `--gpus=1` is scheduled exactly as on a GPU cluster (one such job
#      at a time, CUDA_VISIBLE_DEVICES set) but finds no CUDA driver and runs on the CPU; set
#      SEGROBUST_SLURM_FAKE_GPUS=0 to reject GPU requests as a CPU-only cluster does;
#   4. creates a munge key, starts munged, slurmctld and slurmd as daemons (their pid files lie in
#      STATE_DIR/run/), and waits (SEGROBUST_SLURM_WAIT seconds, default 60) until `sinfo` shows
#      the node idle. On failure it prints the daemon logs, stops what it started and exits 1.
#
# Stop with: ci/slurm/stop.sh STATE_DIR
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state_dir="${1:-${SEGROBUST_SLURM_DIR:-}}"
fake_gpus="${SEGROBUST_SLURM_FAKE_GPUS:-1}"
wait_s="${SEGROBUST_SLURM_WAIT:-60}"
partition="${SEGROBUST_SLURM_PARTITION:-ci}"
gpu_partition="${SEGROBUST_SLURM_GPU_PARTITION:-gpu}"
ctld_port="${SEGROBUST_SLURM_CTLD_PORT:-6817}"
slurmd_port="${SEGROBUST_SLURM_SLURMD_PORT:-6818}"

die() {
    echo "ci/slurm/start.sh: error: $*" >&2
    exit 1
}

[[ "$(id -u)" == 0 ]] ||
    die "must run as root (the daemons and the jobs run as root; got uid $(id -u))"
# One /dev/null-backed GPU at most: SLURM needs a distinct device file for each GPU.
[[ "$fake_gpus" =~ ^[01]$ ]] || die "SEGROBUST_SLURM_FAKE_GPUS must be 0 or 1, got '$fake_gpus'"
[[ "$wait_s" =~ ^[0-9]+$ ]] ||
    die "SEGROBUST_SLURM_WAIT must be a whole number of seconds, got '$wait_s'"
[[ "$gpu_partition" != "$partition" ]] ||
    die "SEGROBUST_SLURM_GPU_PARTITION must differ from SEGROBUST_SLURM_PARTITION ('$partition')"

install_packages() {
    local missing=()
    for cmd in slurmctld slurmd sbatch squeue sinfo srun munged mungekey; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null ||
        die "missing ${missing[*]} and no apt-get to install slurm-wlm and munge"
    echo "ci/slurm/start.sh: installing slurm-wlm and munge (missing: ${missing[*]})"
    # Keep the packages' maintainer scripts from starting the system-wide daemons: this script
    # starts its own and must leave nothing else running. policy-rc.d is Debian's switch for this.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                slurm-wlm munge
    } || rc=$?
    ((created_policy)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get could not install slurm-wlm and munge (exit $rc)"
}

install_packages

if [[ -z "$state_dir" ]]; then
    state_dir="$(mktemp -d /tmp/segrobust-slurm.XXXXXX)"
fi
mkdir -p "$state_dir"
state_dir="$(cd "$state_dir" && pwd)"
# munged needs every directory above its socket to be enterable by all (mktemp makes 0700).
# Secrets stay private: the key lives in a 0700 subdirectory.
chmod 0755 "$state_dir"
run_dir="$state_dir/run"
log_dir="$state_dir/log"
munge_dir="$state_dir/munge"   # key and seed: private to root
socket_dir="$state_dir/sock"   # munged wants its socket directory open to all (r-x)

for pidfile in "$run_dir"/*.pid; do
    [[ -e "$pidfile" ]] || continue
    if kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        die "a daemon from $state_dir is still running ($pidfile);" \
            "run ci/slurm/stop.sh $state_dir first"
    fi
done
# A socket path longer than sun_path (108 bytes) cannot be bound: fail early and say so.
((${#socket_dir} + 16 < 108)) || die "STATE_DIR path too long for a unix socket: $state_dir"

mkdir -p "$run_dir" "$log_dir" "$state_dir/ctld-state" "$state_dir/slurmd-spool"
# munged refuses key directories that others may read and socket directories they may not enter.
install -d -m 0700 "$munge_dir"
install -d -m 0755 "$socket_dir"

host="$(hostname -s)"
# `slurmd -C` prints this node's hardware exactly as slurmd will later check it
# (CPUs, sockets, cores, threads, RealMemory), so the node never comes up as INVALID.
node_hw="$(slurmd -C | head -n 1)"
[[ "$node_hw" == NodeName=* ]] || die "unexpected output of 'slurmd -C': $node_hw"
node_hw="${node_hw#NodeName=* }"

gres_line=""
if ((fake_gpus > 0)); then
    gres_line="GresTypes=gpu"
    node_hw="$node_hw Gres=gpu:$fake_gpus"
fi

cat >"$state_dir/slurm.conf" <<CONF
# Generated by ci/slurm/start.sh: a single-node test cluster on $host. Do not use in production.
ClusterName=segrobust-ci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket_dir/munge.socket
StateSaveLocation=$state_dir/ctld-state
SlurmdSpoolDir=$state_dir/slurmd-spool
SlurmctldPidFile=$run_dir/slurmctld.pid
SlurmdPidFile=$run_dir/slurmd.pid
SlurmctldLogFile=$log_dir/slurmctld.log
SlurmdLogFile=$log_dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Containers have no usable cgroups: track processes through /proc, bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
# No database: no accounting, no job completion log.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
# Keep finished jobs in slurmctld (scontrol show job) for an hour instead of 5 minutes.
MinJobAge=3600
$gres_line
NodeName=$host NodeAddr=127.0.0.1 $node_hw State=UNKNOWN
PartitionName=$partition Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=$gpu_partition Nodes=$host Default=NO MaxTime=INFINITE State=UP
CONF

# gres.conf lies beside slurm.conf, where SLURM looks for it. The fake GPU is bound to /dev/null:
# schedulable like a GPU, but no CUDA device exists behind it (see the header).
if ((fake_gpus > 0)); then
    echo "NodeName=$host Name=gpu File=/dev/null" >"$state_dir/gres.conf"
else
    rm -f "$state_dir/gres.conf"
fi

printf 'export SLURM_CONF=%q\n' "$state_dir/slurm.conf" >"$state_dir/env.sh"
export SLURM_CONF="$state_dir/slurm.conf"

# The Snakemake job step (snakemake-executor-plugin-slurm-jobstep) strips every SLURM_* variable,
# SLURM_CONF included, before its nested `srun`, which then reads the compiled-in default
# /etc/slurm/slurm.conf. So link that path to this cluster's config, but never replace a real
# one; stop.sh removes the link (and only a link that points here).
system_conf=/etc/slurm/slurm.conf

# True when DIR is a state directory this script wrote (env.sh and run/ beside slurm.conf) and
# none of its daemons is alive: a test cluster whose process was killed before stop.sh ran (a
# cancelled CI job, a machine image taken mid-test). Its link may be replaced; anything else
# (a real installation, a live test cluster) may not.
dead_test_cluster() {
    local dir="$1" pidfile pid
    [[ -f "$dir/env.sh" && -d "$dir/run" ]] || return 1
    for pidfile in "$dir"/run/*.pid; do
        [[ -s "$pidfile" ]] || continue
        pid="$(tr -dc 0-9 <"$pidfile")"
        [[ -n "$pid" ]] || continue
        case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
            munged | slurmctld | slurmd) return 1 ;;
        esac
    done
    return 0
}

linked="$(readlink "$system_conf" 2>/dev/null || true)"
if [[ -L "$system_conf" && "$linked" == "$SLURM_CONF" ]]; then
    :
elif [[ -L "$system_conf" && ! -e "$system_conf" ]]; then
    # Dangling: left by a test cluster that was never stopped and whose directory is gone.
    echo "ci/slurm/start.sh: replacing the dangling symlink $system_conf -> $linked"
    ln -sfn "$SLURM_CONF" "$system_conf"
elif [[ -L "$system_conf" && "$(basename "$linked")" == slurm.conf ]] &&
    dead_test_cluster "$(dirname "$linked")"; then
    echo "ci/slurm/start.sh: replacing $system_conf -> $linked, left by a test cluster" \
        "whose daemons are gone"
    ln -sfn "$SLURM_CONF" "$system_conf"
elif [[ -e "$system_conf" || -L "$system_conf" ]]; then
    die "$system_conf exists (a real SLURM installation?); refusing to replace it." \
        "Remove it, or run the test on a machine without SLURM"
else
    mkdir -p "$(dirname "$system_conf")"
    ln -s "$SLURM_CONF" "$system_conf"
fi

dump_logs_and_fail() {
    echo "ci/slurm/start.sh: error: $*" >&2
    for log in "$log_dir"/*.log; do
        [[ -e "$log" ]] || continue
        echo "----- $log (last 40 lines) -----" >&2
        tail -n 40 "$log" >&2
    done
    "$here/stop.sh" "$state_dir" >&2 || true
    exit 1
}

if [[ ! -e "$munge_dir/munge.key" ]]; then
    mungekey --create --keyfile="$munge_dir/munge.key"
fi
chmod 0400 "$munge_dir/munge.key"
munged --key-file="$munge_dir/munge.key" --socket="$socket_dir/munge.socket" \
    --pid-file="$run_dir/munged.pid" --log-file="$log_dir/munged.log" \
    --seed-file="$munge_dir/munged.seed" ||
    dump_logs_and_fail "munged did not start"
munge -n -S "$socket_dir/munge.socket" | unmunge -S "$socket_dir/munge.socket" >/dev/null ||
    dump_logs_and_fail "munge cannot encode and decode a credential"

slurmctld -f "$SLURM_CONF" || dump_logs_and_fail "slurmctld did not start"
slurmd -f "$SLURM_CONF" || dump_logs_and_fail "slurmd did not start"

deadline=$((SECONDS + wait_s))
state=""
# The node is in both partitions: ask about it in one, or sinfo prints one line per partition.
node_info() { sinfo -h -N -n "$host" -p "$partition" -o "$1" 2>/dev/null || true; }
while ((SECONDS < deadline)); do
    state="$(node_info '%T')"
    [[ "$state" == idle ]] && break
    # A drained or invalid node never becomes idle by itself: fail now, the logs say why.
    [[ "$state" == *drain* || "$state" == inval* ]] &&
        dump_logs_and_fail "node $host is '$state': $(node_info '%E')"
    sleep 1
done
[[ "$state" == idle ]] ||
    dump_logs_and_fail "node $host not idle after ${wait_s}s (sinfo state: '${state:-no answer}')"

echo "ci/slurm/start.sh: SLURM is up: node $host idle in partitions '$partition'" \
    "(default) and '$gpu_partition' ($state_dir)"
echo "export SLURM_CONF=$SLURM_CONF"
