include: "rank_heads_inputs.smk"


if RANK_HEADS["protocol"] == "cached":

    rule feature_cache:
        input:
            checkpoint=checkpoint_source_input,
            weights=checkpoint_files_input,
            train=sample_input("train"),
            eval=sample_input("eval"),
        output:
            # One backbone pass per token for the whole sweep; deleted after the sweep unless
            # rank_heads.keep_cache is set.
            cache=cache_output(PATH["rank_head_cache"]),
            original=PATH["original_head"],
        log:
            "logs/rank_heads/{model}/step{step}/cache.log",
        benchmark:
            "benchmarks/rank_heads/{model}/step{step}/cache.tsv"
        conda:
            "../envs/torch.yaml"
        threads: RANK_HEADS["threads"]
        resources:
            mem_mb=backbone_setting("mem_mb"),
            runtime=backbone_setting("runtime"),
            gpu=RANK_HEADS["gpu"],
        params:
            code=code_of("feature_cache.py"),
            cache=backbone_params(
                (
                    "train_tokens",
                    "sequence_length",
                    "batch_size",
                    "shard_tokens",
                    "chunk_tokens",
                    "dtype",
                    "cache_dtype",
                    "device",
                )
            ),
            allow_pickle=CHECKPOINT_CONFIG["allow_pickle"],
            hub=HUB_ACCESS,
        script:
            "../scripts/feature_cache.py"

    rule rank_head:
        input:
            cache=PATH["rank_head_cache"],
            original=PATH["original_head"],
        output:
            PATH["rank_heads_part"],
        log:
            "logs/rank_heads/{model}/step{step}/r{ranks}.log",
        benchmark:
            "benchmarks/rank_heads/{model}/step{step}/r{ranks}.tsv"
        conda:
            "../envs/torch.yaml"
        threads: RANK_HEADS["threads"]
        resources:
            mem_mb=backbone_setting("mem_mb"),
            runtime=backbone_setting("runtime", per_rank=True),
            gpu=RANK_HEADS["gpu"],
        params:
            code=code_of("rank_head.py"),
            ranks=rank_head_job,
            setup=head_setup(HEAD_TRAINING_KEYS),
            kinds=RANK_HEADS["kinds"],
            device=RANK_HEADS["device"],
        script:
            "../scripts/rank_head.py"

else:

    rule score_original_head:
        input:
            checkpoint=checkpoint_source_input,
            weights=checkpoint_files_input,
            eval=sample_input("eval"),
        output:
            PATH["original_head"],
        log:
            "logs/rank_heads/{model}/step{step}/original.log",
        benchmark:
            "benchmarks/rank_heads/{model}/step{step}/original.tsv"
        conda:
            "../envs/torch.yaml"
        threads: RANK_HEADS["threads"]
        resources:
            mem_mb=backbone_setting("mem_mb"),
            runtime=backbone_setting("runtime"),
            gpu=RANK_HEADS["gpu"],
        params:
            code=code_of("score_original_head.py"),
            stream=backbone_params(
                ("dtype", "device", "sequence_length", "batch_size", "chunk_tokens")
            ),
            allow_pickle=CHECKPOINT_CONFIG["allow_pickle"],
            hub=HUB_ACCESS,
        script:
            "../scripts/score_original_head.py"

    rule stream_rank_heads:
        input:
            checkpoint=checkpoint_source_input,
            weights=checkpoint_files_input,
            train=sample_input("train"),
            eval=sample_input("eval"),
        output:
            PATH["rank_heads_part"],
        log:
            "logs/rank_heads/{model}/step{step}/r{ranks}.log",
        benchmark:
            "benchmarks/rank_heads/{model}/step{step}/r{ranks}.tsv"
        conda:
            "../envs/torch.yaml"
        threads: RANK_HEADS["threads"]
        resources:
            mem_mb=backbone_setting("mem_mb"),
            runtime=backbone_setting("runtime", per_rank=True),
            gpu=RANK_HEADS["gpu"],
        params:
            code=code_of("stream_rank_heads.py"),
            ranks=rank_head_job,
            kinds=RANK_HEADS["kinds"],
            setup=head_setup(STREAM_TRAINING_KEYS),
            stream=backbone_params(("train_tokens", "select_tokens", "dtype", "device")),
            allow_pickle=CHECKPOINT_CONFIG["allow_pickle"],
            hub=HUB_ACCESS,
        script:
            "../scripts/stream_rank_heads.py"


rule aggregate_rank_heads:
    input:
        heads=[
            PATH["rank_heads_part"].format(model=b["model"], step=b["step"], ranks=job)
            for b in BACKBONES
            for job in RANK_JOBS
        ],
        originals=[
            PATH["original_head"].format(model=b["model"], step=b["step"])
            for b in BACKBONES
        ],
    output:
        heads=TABLES["rank_heads"],
        spectra=TABLES["backbone_spectra"],
    log:
        "logs/tables/aggregate_rank_heads.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_of("aggregate_rank_heads.py"),
    script:
        "../scripts/aggregate_rank_heads.py"
