#!/usr/bin/env bash
# A single-node Slurm cluster on this machine (Debian's slurm-wlm + munge), for tests and the batch
# benchmark. Needs root (the daemons run as root; a test cluster only).
#
#   scripts/cluster/slurm-local.sh start   # install if missing, configure, start munged/slurmctld/slurmd
#   scripts/cluster/slurm-local.sh stop    # stop the three daemons
#   scripts/cluster/slurm-local.sh status
#
# The node advertises SLURM_LOCAL_CPUS CPUs (default 4, more than a small machine has, so that a
# 4-task array runs at once; SlurmdParameters=config_overrides lets slurmd accept that). State lives
# in /var/spool/slurm-local; logs in /var/log/slurm-local.
set -euo pipefail
cmd="${1:-start}"
state=/var/spool/slurm-local
logs=/var/log/slurm-local
conf=/etc/slurm/slurm.conf
cpus="${SLURM_LOCAL_CPUS:-4}"

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-local: needs root (a local test cluster runs its daemons as root)" >&2
    exit 3
  fi
}

install_missing() {
  local missing=()
  for p in slurm-wlm munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "slurm-local: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

stop() {
  # A clean shutdown of the controller and the node daemon first (also reaches daemons whose pid
  # file is gone), then the pid files.
  if [ -f "$conf" ] && command -v scontrol >/dev/null 2>&1; then
    timeout 10 scontrol shutdown >/dev/null 2>&1 || true
    for _ in $(seq 50); do pgrep -x slurmctld >/dev/null || break; sleep 0.1; done
  fi
  for d in slurmd slurmctld; do
    if [ -f "$state/$d.pid" ]; then
      kill "$(cat "$state/$d.pid")" 2>/dev/null || true
      rm -f "$state/$d.pid"
    fi
  done
  if [ -f /run/munge/munged.pid ]; then
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  fi
}

configure() {
  local host mem
  host=$(hostname -s)
  mem=$(awk '/MemTotal/ {printf "%d", $2/1024*0.8}' /proc/meminfo)
  mkdir -p "$state/ctld" "$state/d" "$logs" /etc/slurm
  cat >"$conf" <<CONF
# Written by scripts/cluster/slurm-local.sh: a one-node test cluster.
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
MessageTimeout=30
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
SlurmdParameters=config_overrides
KillWait=5
MinJobAge=3600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown munge:munge /etc/munge/munge.key 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  if ! munge -n >/dev/null 2>&1; then
    if id munge >/dev/null 2>&1; then
      runuser -u munge -- /usr/sbin/munged
    else
      /usr/sbin/munged --force
    fi
    for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  munge -n | unmunge >/dev/null
}

wait_idle() {
  for _ in $(seq 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
      return 0
    fi
    scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
    sleep 1
  done
  echo "slurm-local: the node did not come up; see $logs/" >&2
  sinfo >&2 || true
  tail -5 "$logs/slurmctld.log" "$logs/slurmd.log" >&2 || true
  return 1
}

case "$cmd" in
  start)
    need_root
    install_missing
    stop
    configure
    start_munge
    slurmctld -i
    slurmd
    wait_idle
    echo "slurm-local: up ($(sinfo -h -o '%N %c CPUs %T'))"
    ;;
  stop)
    need_root
    stop
    echo "slurm-local: stopped"
    ;;
  status)
    sinfo
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
