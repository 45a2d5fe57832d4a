"""Each shipped study config planned by a dry run with the hub unreachable: the jobs it asks
for, where their outputs go, and what it leaves out."""

import re

import pytest

from conftest import copy_workflow, run_snakemake


def plan_offline(workdir, configfile: str) -> str:
    """The dry run's job list for a shipped config, the hub unreachable."""
    result = run_snakemake(
        copy_workflow(workdir),
        "-n",
        "--configfile",
        configfile,
        env={"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# {config: (jobs of each rule, paths and lines planned (regular expressions), rules left out)}
PLANS = {
    # The paper's run: 8 Pythia models x 154 revisions (+ 21 the schedule adds) and Llama-2-7B,
    # a rank-head backbone only (one manifest each, no download job: prefetch is asked for).
    # WikiText (Fig 3): its documents once, encoded once (one tokenizer for all Pythia). The
    # rank heads as the paper trains them: one streaming job and one original head a backbone
    # (four Pythia models and Llama-2-7B, its sample tokenized its way, its job in bfloat16
    # with its own memory), no feature cache; Fig 9 for the rate grid.
    "pythia.yaml": (
        {
            "revision_manifest": 10,
            "measure_checkpoint": 1253,
            "fig5_singular_entropy": 1,
            "eval_corpus": 1,
            "tokenize_eval_corpus": 1,
            "stream_rank_heads": 5,
            "score_original_head": 5,
            "tokenize_corpus": 2,
            "fig9_learning_rates": 1,
            "sample_corpus": 2,
        },  # fmt: skip
        [
            "results/eval_corpora/wikitext/EleutherAI--pythia-160m.parquet",
            "results/metrics/pythia-2.8b/step143000/checkpoint_metrics.parquet",
            "results/rank_heads/Llama-2-7b-hf/step0/r1-full.parquet",
            r"wildcards: model=Llama-2-7b-hf, step=0, ranks=1-full\n.*mem_mb=80000",
        ],
        ["prefetch_checkpoint", "feature_cache"],
    ),
    # The paper's Fig 2 suite: 21 final checkpoints of four families, each model on the sample
    # tokenized its family's way. Both splits for GPT-2's, OPT's and Gemma's tokenizers
    # (Pythia's drew the sample): the eval split measured, the train split the rank heads'
    # (GPT-2, OPT) and each tokenizer's token counts (metrics.parts frequency).
    "families.yaml": (
        {"measure_checkpoint": 21, "tokenize_corpus": 6, "count_tokens": 4},
        [
            "results/corpus/eval/openai-community--gpt2.parquet",
            "results/corpus/eval/facebook--opt-125m.parquet",
            "results/corpus/eval/google--gemma-2b.parquet",
            "results/corpus/train/facebook--opt-125m.parquet",
            "results/metrics/gemma-7b/step0/checkpoint_metrics.parquet",
            "results/metrics/pythia-12b/step143000/checkpoint_metrics.parquet",
        ],
        [],
    ),
    # Five sizes, each with the original run and nine seeds: 50 models x 154 revisions.
    "polypythia.yaml": (
        {"revision_manifest": 50, "measure_checkpoint": 7700},
        [
            "results/metrics/pythia-410m-seed9/step143000/checkpoint_metrics.parquet",
            "results/tables/saturation_by_size.parquet",
        ],
        [],
    ),
    # Ten sizes x 154 revisions, ten revisions a job, the head alone: no corpus, no forward
    # pass, Figs 4 and 5 only.
    "pythia-spectra.yaml": (
        {"revision_manifest": 10, "measure_checkpoint": 154},
        ["results/figures/fig4_head_spectrum.png", "results/figures/fig5_singular_entropy.png"],
        ["sample_corpus", "scaling_fit", "rank_head", "ngram_spectrum", "fig1a_loss"],
    ),
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_a_shipped_config_plans_offline(name, tmp_path):
    jobs, planned, absent = PLANS[name]
    out = plan_offline(tmp_path, f"config/{name}")
    for rule, count in jobs.items():
        assert re.search(rf"\n{rule}\s+{count}\n", out), (rule, count)
    for pattern in planned:
        assert re.search(pattern, out), pattern
    for rule in absent:
        assert rule not in out, rule
