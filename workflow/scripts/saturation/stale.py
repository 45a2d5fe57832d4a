"""Outputs in ``results/`` that the run's configuration does not make: another study's, run in
the same folder before. They are not read by this run (every rule reads what its config
names), and not deleted (they may be all that is left of that study): the run names them at
its end, so that a Table 1 or a figure of another configuration is never taken for this
one's."""

from __future__ import annotations

from pathlib import Path

# The folders whose every file is a final output, made from the configuration.
FINAL_FOLDERS = ("results/tables", "results/figures")


def stale_outputs(targets: list[str], folders=FINAL_FOLDERS) -> list[str]:
    """The files under ``folders`` that are not among ``targets`` (the run's own outputs,
    and the numbers each figure writes beside it), sorted."""
    own = {str(Path(t)) for t in targets}
    own |= {str(Path(t).with_suffix(".csv")) for t in targets if t.endswith(".png")}
    found = (str(p) for folder in folders for p in Path(folder).glob("*") if p.is_file())
    return sorted(p for p in found if p not in own)


def stale_report(targets: list[str]) -> str | None:
    """What a finished run says of outputs another configuration left (None: none)."""
    stale = stale_outputs(targets)
    if not stale:
        return None
    shown = stale[:8] + ([f"and {len(stale) - 8} more"] if len(stale) > 8 else [])
    return (
        f"{len(stale)} file(s) in results/ were not made by this configuration (another "
        "study's, run in this folder before?); they are not part of this run's results. "
        "Delete them, or give each study a folder of its own (--directory):\n  "
        + "\n  ".join(shown)
    )
