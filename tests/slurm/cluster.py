"""The one-node test cluster (tests/slurm/up.sh) as the tests and bench/bench_slurm_scale.py
use it: the arguments they add to the shipped profile, and submissions counted at the
controller."""

from pathlib import Path

# The shipped profile, and only what a one-node test cluster needs besides: no account,
# status through squeue, short waits before and between status checks.
PROFILE_ARGS = (
    "--workflow-profile",
    "profiles/slurm",
    "--slurm-no-account",
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--seconds-between-status-checks",
    "2",
)


def submissions(slurm_state: Path) -> int:
    """Batch jobs the controller has accepted so far (one per job array, too)."""
    return (slurm_state / "slurmctld.log").read_text().count("_slurm_rpc_submit_batch_job")
