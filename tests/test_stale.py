"""Outputs another configuration left in results/ are named at the end of a run, neither read
nor deleted."""

from saturation.stale import stale_outputs, stale_report


def test_another_studys_outputs_are_named_not_deleted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = [
        "results/tables/checkpoint_metrics.parquet",
        "results/tables/table1.md",  # a study with downstream evaluation, run here before
        "results/figures/fig1a_loss.png",
        "results/figures/fig1a_loss.pdf",
        "results/figures/fig1a_loss.csv",  # the numbers a figure plots: its own
        "results/figures/fig6_rank_heads.png",
        "results/corpus/eval.parquet",  # not a final output: never named
    ]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")
    targets = files[:1] + files[2:4]
    assert stale_outputs(targets) == [
        "results/figures/fig6_rank_heads.png",
        "results/tables/table1.md",
    ]
    report = stale_report(targets)
    assert report.startswith("2 file(s) in results/ were not made by this configuration")
    assert "--directory" in report and "results/tables/table1.md" in report
    assert all((tmp_path / f).exists() for f in files)
    assert stale_report(files) is None
