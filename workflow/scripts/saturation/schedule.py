"""Checkpoint schedules in the style of Pythia: step 0, log-spaced early steps, then evenly spaced."""

from __future__ import annotations


def checkpoint_steps(final_step: int, log_spaced_until: int, every: int) -> list[int]:
    """Pythia's schedule is ``checkpoint_steps(143000, 512, 1000)``: 154 steps.

    Step 0, the powers of two up to ``log_spaced_until``, then every multiple of ``every`` up
    to and including ``final_step`` (which is always included).
    """
    steps = {0, final_step}
    p = 1
    while p <= min(log_spaced_until, final_step):
        steps.add(p)
        p *= 2
    steps.update(range(every, final_step + 1, every))
    return sorted(steps)


def select_steps(schedule: list[int], subset: list[int] | None) -> list[int]:
    """The configured subset of a schedule; every requested step must lie on it."""
    if subset is None:
        return schedule
    off = sorted(set(subset) - set(schedule))
    if off:
        raise ValueError(
            f"'checkpoints.schedule.subset': steps {off} are not on the checkpoint schedule"
        )
    return sorted(set(subset))
