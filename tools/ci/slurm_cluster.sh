#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the tests of tools/slurm_*.sh.
#
#   bash tools/ci/slurm_cluster.sh start    # install (if needed), configure and start it
#   bash tools/ci/slurm_cluster.sh status   # exit 0 when the node takes jobs
#   bash tools/ci/slurm_cluster.sh stop     # stop what `start` started
#
# `start` needs root. When slurmctld, slurmd, srun or munged are missing it installs Debian's
# slurmctld, slurmd, slurm-client and munge packages with apt-get. The node has this machine's
# CPUs (as `slurmd -C` sees them) and no GPUs, in one partition; processes are tracked without
# cgroups (proctrack/linuxproc, task/none). Everything the cluster writes (slurm.conf, state,
# logs, pid files) goes to DAT_SLURM_DIR (default /tmp/dat-slurm); clients find the
# configuration through SLURM_CONF=$DAT_SLURM_DIR/slurm.conf, and /etc/slurm/slurm.conf is made
# a link to it when no configuration is there yet, so plain `srun` works too.
#
# Exit codes of `start`: 0 running, 1 failed to start (the daemon logs are printed),
# 3 cannot run here (not root, or no packages).
#
# Environment:
#   DAT_SLURM_DIR        where the cluster's files go (default /tmp/dat-slurm)
#   DAT_SLURM_PARTITION  the partition's name (default debug)
set -uo pipefail

DIR=${DAT_SLURM_DIR:-/tmp/dat-slurm}
PARTITION=${DAT_SLURM_PARTITION:-debug}
CONF=$DIR/slurm.conf
ETC_CONF=/etc/slurm/slurm.conf
export SLURM_CONF=$CONF

say() { echo "[slurm_cluster] $*"; }
die() { local rc=$1; shift; echo "[slurm_cluster] error: $*" >&2; exit "$rc"; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

pid_alive() { [[ -s $1 && -d /proc/$(cat "$1") ]]; }

node_state() { sinfo -h -N -p "$PARTITION" -o %t 2>/dev/null | head -n1; }

install_packages() {
  local missing=()
  for cmd in slurmctld slurmd srun munged; do
    command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$cmd" >/dev/null 2>&1 \
      || missing+=("$cmd")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null 2>&1 \
    || die 3 "${missing[*]} not installed and there is no apt-get to install them"
  say "installing slurmctld slurmd slurm-client munge (missing: ${missing[*]})"
  local t0
  t0=$(now)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$DIR/apt.log" 2>&1 \
    && apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge \
      >>"$DIR/apt.log" 2>&1 \
    || { tail -n 20 "$DIR/apt.log" >&2; die 3 "apt-get could not install the Slurm packages"; }
  say "installed in $(since "$t0") s"
}

write_conf() {
  local host node
  host=$(hostname -s)
  # e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 ..."
  node=$(slurmd -C | head -n1)
  [[ $node == NodeName=* ]] || die 1 "slurmd -C did not describe this node: $node"
  cat >"$CONF" <<EOF
# Written by tools/ci/slurm_cluster.sh: a one-node cluster for the tests.
ClusterName=dat-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
KillWait=5
MinJobAge=300
SlurmdTimeout=60
InactiveLimit=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  # /etc/slurm/slurm.conf: link ours there unless another configuration is in place.
  if [[ ! -e $ETC_CONF && ! -L $ETC_CONF ]]; then
    mkdir -p "$(dirname "$ETC_CONF")" && ln -s "$CONF" "$ETC_CONF"
  fi
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return 0
  fi
  [[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create \
    || die 1 "could not create /etc/munge/munge.key"
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- munged || die 1 "munged did not start (see /var/log/munge/munged.log)"
  touch "$DIR/munged.started"
  for _ in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die 1 "munged started but does not answer"
}

show_logs() {
  for log in "$DIR/slurmctld.log" "$DIR/slurmd.log"; do
    [[ -f $log ]] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }
  done
}

cmd_status() {
  local state=""
  # (without a slurmctld, sinfo would wait for it for MessageTimeout seconds)
  pid_alive "$DIR/slurmctld.pid" && state=$(node_state)
  case $state in
    idle | mix | alloc | comp)
      say "running: partition $PARTITION, node $(sinfo -h -N -o '%N %c CPUs %t'); SLURM_CONF=$CONF"
      return 0 ;;
    "") say "not running (no answer from slurmctld)"; return 1 ;;
    *) say "node is $state"; return 1 ;;
  esac
}

cmd_start() {
  if command -v sinfo >/dev/null 2>&1 && cmd_status >/dev/null; then
    cmd_status
    return 0
  fi
  [[ $(id -u) -eq 0 ]] || die 3 "starting Slurm needs root (slurmd runs the jobs as their users)"
  mkdir -p "$DIR/state" "$DIR/spool"
  export PATH=$PATH:/usr/sbin:/sbin
  install_packages
  local t0
  t0=$(now)
  write_conf
  start_munge
  pid_alive "$DIR/slurmctld.pid" || slurmctld -f "$CONF" || { show_logs; die 1 "slurmctld did not start"; }
  pid_alive "$DIR/slurmd.pid" || slurmd -f "$CONF" || { show_logs; die 1 "slurmd did not start"; }
  local state
  for _ in $(seq 120); do
    state=$(node_state)
    case $state in
      idle | mix | alloc) break ;;
      down* | drain* | fail*) scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null ;;
    esac
    sleep 0.5
  done
  cmd_status >/dev/null || { show_logs; die 1 "the node did not come up (state: '${state:-none}')"; }
  say "started in $(since "$t0") s"
  cmd_status
}

stop_pid() {
  local name=$1 pidfile=$2
  pid_alive "$pidfile" || return 0
  local pid
  pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { say "stopped $name"; return 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null
  say "killed $name"
}

cmd_stop() {
  stop_pid slurmd "$DIR/slurmd.pid"
  stop_pid slurmctld "$DIR/slurmctld.pid"
  if [[ -f $DIR/munged.started ]]; then
    stop_pid munged /run/munge/munged.pid
    rm -f "$DIR/munged.started"
  fi
  if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
    rm -f "$ETC_CONF"
  fi
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: bash $0 start|stop|status" >&2; exit 2 ;;
esac
