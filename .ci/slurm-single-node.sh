#!/usr/bin/env bash
# A throwaway single-node Slurm (Debian's slurmctld + slurmd + munge) for the real-Slurm tests
# (tests/test_executors.py, tests/test_pipeline.py).
#   bash .ci/slurm-single-node.sh start   # installs the packages if missing, starts the daemons, waits for the node
#   export SLURM_CONF=/tmp/swallow-slurm/slurm.conf SWALLOW_SLURM_PARTITION=debug
#   bash .ci/slurm-single-node.sh stop
# CI starts it before `make test` and stops it after; when it does not come up, the real-Slurm tests skip.
# Everything but the packages and munge's socket lives under $DIR, so /etc/slurm is never touched.
set -euo pipefail
DIR=${SLURM_SINGLE_NODE_DIR:-/tmp/swallow-slurm}
PIDS=("$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munged.pid")

stop() {
  for f in "${PIDS[@]}"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  rm -rf "$DIR"
}

start() {
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      slurmctld slurmd slurm-client munge >/dev/null
  fi
  mkdir -p "$DIR/state" "$DIR/spool" /run/munge
  export SLURM_CONF=$DIR/slurm.conf
  local host mem
  host=$(hostname)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
  cat >"$SLURM_CONF" <<EOF
ClusterName=swallow-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  # munge as root needs --force; an already running munged (a developer's machine) is reused
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    munged --force --pid-file="$DIR/munged.pid" 2>/dev/null
  fi
  slurmctld
  slurmd
  for _ in $(seq 600); do
    if sinfo -h -o %t 2>/dev/null | grep -q idle; then
      echo "slurm-single-node: up (SLURM_CONF=$SLURM_CONF, partition debug)"
      return 0
    fi
    sleep 0.1
  done
  echo "slurm-single-node: the node did not come up in 60 s; see $DIR/*.log" >&2
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
