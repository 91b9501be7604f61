#!/usr/bin/env bash
# Stop the SLURM cluster started by scripts/slurm/setup_cluster.sh (and remove the network namespaces,
# veth pairs, bridge and /etc/hosts block of its two-node mode).
#
#   bash scripts/slurm/teardown_cluster.sh           # stop the daemons (state and accounting kept)
#   bash scripts/slurm/teardown_cluster.sh --purge   # also remove configs, state, database, fake GPUs
#
# Only the daemons recorded in the pid files that setup_cluster.sh uses are stopped, each by its pid.
set -uo pipefail

STATE=/var/lib/evolcoder-slurm
MARIADB_PID=/run/mysqld/evolcoder-mariadb.pid
PURGE=""
[ "${1:-}" = "--purge" ] && PURGE=1

log() { printf '[teardown_cluster] %s\n' "$*" >&2; }

stop_pidfile() {  # stop_pidfile NAME PIDFILE
  local name=$1 pidfile=$2 pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop in 30 s, killing it"
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  rm -f "$pidfile"
}

# cancel what is still queued or running, so slurmd leaves no job processes behind
if command -v scancel >/dev/null && scontrol ping >/dev/null 2>&1; then
  scancel --full --quiet --state=PENDING >/dev/null 2>&1 || true
  scancel --full --quiet >/dev/null 2>&1 || true
fi

stop_pidfile slurmd "$STATE/slurmd.pid"
for pidfile in "$STATE"/slurmd-*.pid; do  # the namespace nodes of two-node mode
  [ -e "$pidfile" ] || continue
  name=${pidfile##*/slurmd-}
  stop_pidfile "slurmd ${name%.pid}" "$pidfile"
done
stop_pidfile slurmctld "$STATE/slurmctld.pid"
stop_pidfile slurmdbd "$STATE/slurmdbd.pid"
if [ -n "$PURGE" ] && [ -s "$MARIADB_PID" ] && kill -0 "$(cat "$MARIADB_PID")" 2>/dev/null; then
  mariadb --socket=/run/mysqld/mysqld.sock -uroot -e 'DROP DATABASE IF EXISTS slurm_acct_db' || true
fi
stop_pidfile mariadb "$MARIADB_PID"
stop_pidfile munged /run/munge/munged.pid

# two-node mode: the network namespaces, veth pairs and bridge setup_cluster.sh made, and its /etc/hosts block
for marker in "$STATE"/created-netns-*; do
  [ -e "$marker" ] || continue
  ns=${marker##*/created-netns-}
  log "removing network namespace $ns"
  ip netns del "$ns" 2>/dev/null || true   # its end of the veth pair goes with it, and so the pair
  rm -f "$marker"
done
for marker in "$STATE"/created-bridge-*; do
  [ -e "$marker" ] || continue
  br=${marker##*/created-bridge-}
  log "removing bridge $br"
  ip link del "$br" 2>/dev/null || true
  rm -f "$marker"
done
if grep -q '^# evolcoder-slurm begin' /etc/hosts 2>/dev/null; then
  # in place (/etc/hosts may be a bind mount that cannot be replaced)
  hosts=$(sed '/^# evolcoder-slurm begin/,/^# evolcoder-slurm end/d' /etc/hosts)
  printf '%s\n' "$hosts" > /etc/hosts
fi

if [ -n "$PURGE" ]; then
  log "purging state, accounting database and fake GPU devices"
  for marker in "$STATE"/created-nvidia*; do
    [ -e "$marker" ] || continue
    rm -f "/dev/${marker##*/created-}" "$marker"
  done
  rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/* /var/lib/slurm/slurmd-evnode* "$STATE"
  rm -f /etc/slurm/slurm-evnode*.conf /etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/cgroup.conf /etc/slurm/slurmdbd.conf
fi
log "done"
