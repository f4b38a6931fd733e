#!/usr/bin/env bash
# Stop the daemons that ci/slurm/start.sh STATE_DIR started, and only those.
#
# Usage: ci/slurm/stop.sh STATE_DIR
#
# Reads the pid files start.sh's daemons wrote under STATE_DIR/run/, checks that each pid still
# belongs to the expected program (a pid may have been reused), sends SIGTERM, waits up to 20 s,
# then SIGKILL. Order: slurmd, slurmctld, munged (clients first, the auth daemon last). Removes
# the /etc/slurm/slurm.conf symlink start.sh made, if it still points into STATE_DIR.
# Running it twice, or on a cluster that never came up, is harmless. STATE_DIR is kept (its logs
# help after a failure); delete it yourself.
set -euo pipefail

[[ $# == 1 ]] || {
    echo "usage: ci/slurm/stop.sh STATE_DIR" >&2
    exit 2
}
state_dir="$(cd "$1" 2>/dev/null && pwd)" || {
    echo "ci/slurm/stop.sh: no such directory: $1" >&2
    exit 2
}
run_dir="$state_dir/run"

stop_daemon() {
    local name="$1" pidfile="$run_dir/$1.pid" pid
    [[ -s "$pidfile" ]] || return 0
    pid="$(tr -dc 0-9 <"$pidfile")"
    if [[ -z "$pid" ]] || [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]]; then
        rm -f "$pidfile"  # stale: the daemon is gone (the pid may even belong to another program)
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "ci/slurm/stop.sh: $name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    echo "ci/slurm/stop.sh: stopped $name (pid $pid)"
}

stop_daemon slurmd
stop_daemon slurmctld
stop_daemon munged

system_conf=/etc/slurm/slurm.conf
if [[ -L "$system_conf" && "$(readlink "$system_conf")" == "$state_dir/slurm.conf" ]]; then
    rm -f "$system_conf"
    echo "ci/slurm/stop.sh: removed the symlink $system_conf"
fi
