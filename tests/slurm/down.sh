#!/usr/bin/env bash
# Stop the daemons tests/slurm/up.sh started, by their pids.
state=${1:?usage: down.sh STATE_DIR}
[ -f "$state/pids" ] || exit 0
while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$state/pids"
rm -f "$state/pids"
