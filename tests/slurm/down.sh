#!/usr/bin/env bash
# Stop the daemons tests/slurm/up.sh started, by their pids.
state=${1:?usage: down.sh STATE_DIR}
if [ -f "$state/pids" ]; then
  while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$state/pids"
  rm -f "$state/pids"
fi
# Put back the slurm.conf up.sh found, or remove the one it wrote.
if [ -f "$state/wrote-conf" ]; then
  if [ -f "$state/slurm.conf.orig" ]; then
    mv "$state/slurm.conf.orig" /etc/slurm/slurm.conf
  else
    rm -f /etc/slurm/slurm.conf
  fi
  rm -f "$state/wrote-conf"
fi
