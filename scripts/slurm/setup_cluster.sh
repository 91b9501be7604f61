#!/usr/bin/env bash
# Install and start a one-node SLURM cluster from Debian packages, for tests and CI.
#
#   sudo bash scripts/slurm/setup_cluster.sh        # idempotent; ~1 min the first time
#   bash scripts/slurm/teardown_cluster.sh          # stops every daemon it started
#
# What it builds (no systemd needed, runs as root inside a container or VM):
#   munged, mariadb, slurmdbd (accounting, so `sacct` works as on real clusters),
#   slurmctld and slurmd on this host; partitions `cpu` (default) and `gpu`, both on this node;
#   two fake GPUs declared as gres (character devices /dev/nvidia0 and /dev/nvidia1, major 195),
#   so jobs that ask for --gpus get gres/gpu allocated and CUDA_VISIBLE_DEVICES set.
#   An account `evolcoder` with the calling user in it.
#
# Environment knobs:
#   EVOLCODER_SLURM_GPUS=2         number of fake GPUs
#   EVOLCODER_SLURM_CPUS=16        CPUs the node declares (at least the real count)
#   EVOLCODER_SLURM_MEM_MB=64000   memory the node declares (at least 3/4 of the real memory)
#   EVOLCODER_SLURM_CLUSTER=evolcoder
#   EVOLCODER_SLURM_NO_INSTALL=1   skip apt-get (packages already there)
#   EVOLCODER_SLURM_TIMEOUT=90     seconds to wait for each daemon
#   EVOLCODER_SLURM_NODES=2        two-node mode: also two CPU nodes evnode1, evnode2 in partition `multi`
#
# Two-node mode (multi-node training tests): each extra node is a slurmd in its own network and UTS
# namespace (netns evnode1/evnode2, hostnames evnode1/evnode2), joined by the bridge evbr0 of this
# host: 10.231.0.1 on the host, 10.231.0.11 and .12 in the namespaces; no route leads anywhere
# else. /etc/hosts gains the two names (a marked block that teardown removes). slurmctld is then
# reached at 10.231.0.1. The node named after this host and the partitions cpu/gpu stay as in
# one-node mode. Where namespaces cannot be made, one line says so and the cluster stays one-node.
set -euo pipefail

NGPU=${EVOLCODER_SLURM_GPUS:-2}
NNODES=${EVOLCODER_SLURM_NODES:-1}
NET_PREFIX=10.231.0
BRIDGE=evbr0
CLUSTER=${EVOLCODER_SLURM_CLUSTER:-evolcoder}
TIMEOUT=${EVOLCODER_SLURM_TIMEOUT:-90}
ACCOUNT=evolcoder
STATE=/var/lib/evolcoder-slurm          # pid files and logs of the daemons this script starts
CONF=/etc/slurm
DBPASS=evolcoder-slurmdbd

log() { printf '[setup_cluster] %s\n' "$*" >&2; }
die() { printf '[setup_cluster] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts daemons)"

wait_for() {  # wait_for DESCRIPTION CMD...
  local what=$1; shift
  local t0=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - t0 > TIMEOUT )); then
      log "timeout waiting for $what; last logs:"
      tail -n 20 "$STATE"/*.log >&2 2>/dev/null || true
      die "$what did not come up within ${TIMEOUT}s"
    fi
    sleep 1
  done
}

alive() {  # alive PIDFILE -> 0 when the process in it runs
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# ---------------------------------------------------------------- packages
PKGS=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
(( NNODES >= 2 )) && PKGS+=(iproute2)   # ip netns, veth, bridge (nsenter/unshare: util-linux, always there)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )) && [ -z "${EVOLCODER_SLURM_NO_INSTALL:-}" ]; then
  log "installing ${missing[*]}"
  # keep the packages' maintainer scripts from starting services (no init system here)
  policy_created=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy_created=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/evolcoder-slurm-apt.log 2>&1; then
    apt-get update -qq >>/tmp/evolcoder-slurm-apt.log 2>&1
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >>/tmp/evolcoder-slurm-apt.log 2>&1 \
      || { [ -n "$policy_created" ] && rm -f /usr/sbin/policy-rc.d; tail -n 30 /tmp/evolcoder-slurm-apt.log >&2; die "apt-get install failed"; }
  fi
  [ -n "$policy_created" ] && rm -f /usr/sbin/policy-rc.d
elif (( ${#missing[@]} )); then
  die "missing packages: ${missing[*]}"
fi

# ---------------------------------------------------------------- host facts
NODE=$(hostname -s)
# The node is declared like a small GPU node (16 CPUs, 64 GB, 2 GPUs) whatever the machine is, so
# that realistic per-rule requests (cpus_per_gpu, mem_mb) are accepted; SlurmdParameters=config_overrides
# makes slurmd trust these numbers. Jobs then share the real cores (no cgroup enforcement here).
NCPU=$(nproc)
(( NCPU >= ${EVOLCODER_SLURM_CPUS:-16} )) || NCPU=${EVOLCODER_SLURM_CPUS:-16}
MEM_MB=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
REAL_MB=$(( MEM_MB * 3 / 4 ))
(( REAL_MB >= ${EVOLCODER_SLURM_MEM_MB:-64000} )) || REAL_MB=${EVOLCODER_SLURM_MEM_MB:-64000}
DEFMEM=$(( REAL_MB / (NCPU * 2) ))      # DefMemPerCPU: without it a job gets the whole node's memory
(( DEFMEM > 256 )) || DEFMEM=256
SLURM_USER=slurm
getent passwd "$SLURM_USER" >/dev/null || die "user $SLURM_USER missing (did the packages install?)"

# ---------------------------------------------------------------- two-node mode: namespaces
MULTI_NODES=()
CTLD_ADDR=127.0.0.1
mkdir -p "$STATE"
if (( NNODES >= 2 )); then
  for ((i = 1; i <= NNODES; i++)); do MULTI_NODES+=("evnode$i"); done
  if ! command -v ip >/dev/null || ! command -v unshare >/dev/null; then
    log "two-node mode: 'ip' or 'unshare' missing (apt-get install iproute2 util-linux); one node only"
    MULTI_NODES=()
  elif ! ip netns add "evcheck$$" 2>/dev/null || ! ip netns del "evcheck$$"; then
    log "two-node mode: cannot create network namespaces here (needs CAP_SYS_ADMIN/CAP_NET_ADMIN); one node only"
    MULTI_NODES=()
  fi
fi
if (( ${#MULTI_NODES[@]} )); then
  CTLD_ADDR=$NET_PREFIX.1
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    touch "$STATE/created-bridge-$BRIDGE"
  fi
  ip addr replace "$NET_PREFIX.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for ((i = 1; i <= ${#MULTI_NODES[@]}; i++)); do
    ns=${MULTI_NODES[i - 1]}
    if [ ! -e "/run/netns/$ns" ]; then
      ip netns add "$ns"
      touch "$STATE/created-netns-$ns"
    fi
    if ! ip link show "evv$i" >/dev/null 2>&1; then
      ip link add "evv$i" type veth peer name evnet0 netns "$ns"
    fi
    ip link set "evv$i" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr replace "$NET_PREFIX.$((10 + i))/24" dev evnet0
    ip -n "$ns" link set evnet0 up
  done
  # the node names resolve everywhere (gloo and torchrun's rendezvous use them); teardown drops the block
  # (the bridge's own address too: reverse look-ups of it would otherwise go to a DNS server out of reach)
  block=$(
    echo "# evolcoder-slurm begin"
    echo "$NET_PREFIX.1 evolcoder-slurm-bridge"
    for ((i = 1; i <= ${#MULTI_NODES[@]}; i++)); do echo "$NET_PREFIX.$((10 + i)) ${MULTI_NODES[i - 1]}"; done
    echo "# evolcoder-slurm end"
  )
  if ! grep -qxF -- "$(printf '%s' "$block" | sed -n 2p)" /etc/hosts || ! grep -q '^# evolcoder-slurm begin' /etc/hosts; then
    rest=$(sed '/^# evolcoder-slurm begin/,/^# evolcoder-slurm end/d' /etc/hosts)
    printf '%s\n%s\n' "$rest" "$block" > /etc/hosts   # in place: /etc/hosts may be a bind mount
  fi
fi

mkdir -p "$STATE" "$CONF" /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm /run/munge /var/run/mysqld
# slurmdbd and slurmctld run as $SLURM_USER and write their pid and log files into $STATE
chown "$SLURM_USER": /var/lib/slurm/slurmctld /var/log/slurm "$STATE"
chown munge: /run/munge
chown mysql: /var/run/mysqld

# ---------------------------------------------------------------- fake GPUs
GPU_FILES=""
for ((i = 0; i < NGPU; i++)); do
  dev=/dev/nvidia$i
  if [ ! -e "$dev" ]; then
    mknod -m 666 "$dev" c 195 "$i" || die "cannot create $dev (mknod needs CAP_MKNOD)"
    touch "$STATE/created-nvidia$i"       # teardown removes only what we created
  fi
done
(( NGPU > 0 )) && GPU_FILES="/dev/nvidia[0-$((NGPU - 1))]"

# ---------------------------------------------------------------- configuration
write_if_changed() {  # write_if_changed PATH MODE OWNER  (content on stdin); prints "changed" if so
  local path=$1 mode=$2 owner=$3 tmp
  tmp=$(mktemp)
  cat > "$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path"; then rm -f "$tmp"; return 0; fi
  install -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$tmp" "$path"
  rm -f "$tmp"
  echo changed
}

changed=""
changed+=$(write_if_changed "$CONF/slurm.conf" 644 root:root <<EOF
# Written by evolcoder scripts/slurm/setup_cluster.sh: a one-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$NODE($CTLD_ADDR)
SlurmUser=$SLURM_USER
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SwitchType=switch/none
# quick turnaround for tests
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MessageTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
Waittime=0
# consumable cores, memory and GPUs, so several jobs share the node
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEFMEM
GresTypes=gpu
# accounting through slurmdbd, as on real clusters (sacct works, with AllocTRES gres/gpu)
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
# keep sbatch --comment (the snakemake plugin puts "rule_<name>_wildcards_<...>" there)
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$REAL_MB Gres=gpu:$NGPU State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
$(for ((i = 1; i <= ${#MULTI_NODES[@]}; i++)); do
  echo "NodeName=${MULTI_NODES[i - 1]} NodeAddr=$NET_PREFIX.$((10 + i)) NodeHostname=${MULTI_NODES[i - 1]} CPUs=$NCPU RealMemory=$REAL_MB State=UNKNOWN"
done
if (( ${#MULTI_NODES[@]} )); then echo "PartitionName=multi Nodes=$(IFS=,; echo "${MULTI_NODES[*]}") Default=NO MaxTime=INFINITE State=UP"; fi)
EOF
)
changed+=$(write_if_changed "$CONF/gres.conf" 644 root:root <<EOF
# fake GPUs: character devices with NVIDIA's major number; nothing behind them
${GPU_FILES:+NodeName=$NODE Name=gpu File=$GPU_FILES}
EOF
)
changed+=$(write_if_changed "$CONF/cgroup.conf" 644 root:root <<EOF
# No cgroup enforcement: proctrack/linuxproc and task/none are used (no systemd, no
# delegated cgroup tree in a container). On a real cluster use task/cgroup and ConstrainDevices=yes.
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
)
changed+=$(write_if_changed "$CONF/slurmdbd.conf" 600 "$SLURM_USER:$SLURM_USER" <<EOF
# Written by evolcoder scripts/slurm/setup_cluster.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=$SLURM_USER
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF
)

if [ -n "$changed" ]; then
  log "configuration written to $CONF"
  # daemons running with an old configuration are restarted below
  for d in slurmd slurmctld slurmdbd; do
    pid=$(cat "$STATE/$d.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      log "stopping $d to pick up the new configuration"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
  done
fi

# ---------------------------------------------------------------- munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating munge key"
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown munge: /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
if ! alive /run/munge/munged.pid && ! (munge -n | unmunge) >/dev/null 2>&1; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  wait_for "munged" test -s /run/munge/munged.pid
fi
wait_for "munge" bash -c 'munge -n | unmunge'

# ---------------------------------------------------------------- mariadb
MARIADB_PID=/run/mysqld/evolcoder-mariadb.pid
if ! alive "$MARIADB_PID"; then
  if [ ! -d /var/lib/mysql/mysql ]; then
    log "initialising mariadb"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$STATE/mariadb-install.log" 2>&1
  fi
  log "starting mariadb"
  runuser -u mysql -- /usr/sbin/mariadbd --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock \
      --pid-file="$MARIADB_PID" --bind-address=127.0.0.1 --skip-name-resolve \
      --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 \
      >>"$STATE/mariadb.log" 2>&1 &
  wait_for "mariadb" mariadb-admin --socket=/run/mysqld/mysqld.sock ping
fi
mariadb --socket=/run/mysqld/mysqld.sock -uroot <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF

# ---------------------------------------------------------------- slurmdbd, slurmctld, slurmd
if ! alive "$STATE/slurmdbd.pid"; then
  log "starting slurmdbd"
  /usr/sbin/slurmdbd
  wait_for "slurmdbd" sacctmgr -n list cluster
fi
# register the cluster, an account and the calling user (idempotent)
sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i -Q add account "$ACCOUNT" Cluster="$CLUSTER" Description="evolcoder tests" Organization=evolcoder >/dev/null 2>&1 || true
for u in root ${SUDO_USER:-}; do
  sacctmgr -i -Q add user "$u" Account="$ACCOUNT" Cluster="$CLUSTER" DefaultAccount="$ACCOUNT" >/dev/null 2>&1 || true
done

if ! alive "$STATE/slurmctld.pid"; then
  log "starting slurmctld"
  /usr/sbin/slurmctld
  wait_for "slurmctld" scontrol ping
fi
if ! alive "$STATE/slurmd.pid"; then
  log "starting slurmd"
  /usr/sbin/slurmd -N "$NODE"
fi

# the namespace nodes: their own pid file, spool and log (the rest of slurm.conf is the same)
for ns in "${MULTI_NODES[@]}"; do
  mkdir -p "/var/lib/slurm/slurmd-$ns"
  sed -e "s|^SlurmdPidFile=.*|SlurmdPidFile=$STATE/slurmd-$ns.pid|" \
      -e "s|^SlurmdSpoolDir=.*|SlurmdSpoolDir=/var/lib/slurm/slurmd-$ns|" \
      -e "s|^SlurmdLogFile=.*|SlurmdLogFile=$STATE/slurmd-$ns.log|" "$CONF/slurm.conf" > "$CONF/slurm-$ns.conf"
  if [ -n "$changed" ] && alive "$STATE/slurmd-$ns.pid"; then
    kill "$(cat "$STATE/slurmd-$ns.pid")" 2>/dev/null || true
    sleep 1
  fi
  if ! alive "$STATE/slurmd-$ns.pid"; then
    log "starting slurmd $ns (network namespace $ns)"
    # nsenter, not `ip netns exec`: that remounts /sys, without the cgroup mount slurmd needs
    nsenter --net="/run/netns/$ns" unshare --uts sh -c "hostname $ns && exec /usr/sbin/slurmd -f $CONF/slurm-$ns.conf -N $ns"
  fi
done

node_ready() {
  local st
  st=$(sinfo -h -N -n "$1" -o %T 2>/dev/null | head -1)
  case "$st" in
    idle*|mixed*|allocated*) return 0 ;;
    down*|drain*|inval*) scontrol update NodeName="$1" State=RESUME >/dev/null 2>&1 || true; return 1 ;;
    *) return 1 ;;
  esac
}
for n in "$NODE" "${MULTI_NODES[@]}"; do
  wait_for "node $n idle" node_ready "$n"
done
wait_for "sacct" sacct -n -X -S now-1minute
log "cluster '$CLUSTER' up: node $NODE${MULTI_NODES[0]:+ (+ ${MULTI_NODES[*]} in partition multi)}, $NCPU CPUs, ${REAL_MB} MB, $NGPU fake GPUs; partitions: $(sinfo -h -o %P | tr '\n' ' ')"
