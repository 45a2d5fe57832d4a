"""Reproduce and extend Godey et al. (2024), "Why do small language models underperform?".

The science of the workflow, organised by concept; the scripts next to this package are thin
entry points that Snakemake runs (rule X runs ``scripts/X.py``, which calls a function X).
Each stage of the workflow (``workflow/rules/<stage>.smk``) and its modules:

- configuration: ``config`` (checks before any job), ``defaults`` (defaults that follow from
  other keys), ``suites`` (the models, their steps and tokenizers, the jobs), ``schedule``
- corpus: ``corpus`` (sampling, token counts), ``synthetic`` (a language of known softmax
  rank), ``retokenize`` (the sample in another model's tokenizer), ``eval_corpora``
- acquisition: ``training`` (the mini-suite), ``hub`` (revision manifests, downloads),
  ``retry`` (transient hub errors), ``ranged`` (a head read by HTTP range), ``branches``,
  ``local_runs`` (a training run on disk), ``loading`` (safe loading of any checkpoint)
- metrics: ``measuring`` (a measuring job), ``metrics`` (the forward pass, anisotropy, the
  head's spectrum), ``bottleneck`` (beyond the paper), ``aggregation`` (the run's tables)
- scaling: ``scaling`` (the law and the saturation analysis), ``significance``
- rank heads: ``head_settings``, ``head_memory`` (what a job holds), ``heads`` (the cached
  protocol), ``streamed_heads`` (the paper's), ``rank_table``
- n-grams: ``ngrams``
- downstream: ``selection`` (best and final checkpoints), ``downstream``, ``tasks``,
  ``story_cloze``, ``bootstrap``, ``table1``
- figures: ``figures`` (the registry), ``plots``, ``plots_beyond``
- shared: ``tables`` (every Parquet schema), ``outputs`` (every file's path, rule and
  meaning), ``io``, ``logs``, ``devices``, ``code`` (the code digests), ``stale``
"""
