#!/usr/bin/env bash
# Bring up a single-node SLURM cluster on this machine, as root, for the integration test.
# Writes the daemons' pids to $1/pids; tests/slurm/down.sh stops them by those pids.
# Exits non-zero with the reason when SLURM cannot be brought up.
set -euo pipefail
state=${1:?usage: up.sh STATE_DIR}
mkdir -p "$state"
for cmd in sbatch squeue slurmctld slurmd munged; do
  command -v "$cmd" >/dev/null || {
    echo "SLURM is not installed ($cmd missing): apt-get update && apt-get install -y slurmctld slurmd slurm-client munge" >&2
    exit 2
  }
done
[ "$(id -u)" = 0 ] || { echo "bringing up SLURM needs root" >&2; exit 2; }

host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm /run/munge
# The jobs' own srun reads /etc/slurm/slurm.conf, whatever SLURM_CONF says.
# down.sh puts back what was there: a stale slurm.conf naming no running controller makes
# every `scontrol` wait 9 s, and the SLURM executor plugin calls it whenever Snakemake starts.
# A slurm.conf of ours (left by a run that was killed) is stale: it is not put back.
if [ -f /etc/slurm/slurm.conf ] && [ ! -f "$state/slurm.conf.orig" ] \
  && ! grep -q '^ClusterName=saturation-test$' /etc/slurm/slurm.conf; then
  cp /etc/slurm/slurm.conf "$state/slurm.conf.orig"
fi
touch "$state/wrote-conf"
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=saturation-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

chown munge:munge /run/munge 2>/dev/null || true
if ! munge -n >/dev/null 2>&1; then
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  /usr/sbin/munged --force --pid-file="$state/munged.pid"
fi
for _ in $(seq 20); do munge -n >/dev/null 2>&1 && break; sleep 0.5; done
munge -n >/dev/null 2>&1 || { echo "munged did not start" >&2; exit 3; }

if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
  echo "a SLURM daemon is already running on this machine; stop it first" >&2
  exit 3
fi
/usr/sbin/slurmctld -c     # -c: a clean state, no jobs left from an earlier run
/usr/sbin/slurmd
alive() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }
for _ in $(seq 60); do
  if alive slurmctld && alive slurmd && sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    for f in munged slurmctld slurmd; do [ -f "$state/$f.pid" ] && cat "$state/$f.pid"; done > "$state/pids"
    sinfo
    exit 0
  fi
  sleep 1
done
echo "the SLURM node did not become idle:" >&2
sinfo >&2 || true
tail -n 20 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
exit 4
