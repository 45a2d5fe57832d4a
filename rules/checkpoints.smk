if CKPT["source"] == "minisuite":

    rule train_minisuite:
        input:
            train="results/corpus/train.parquet",
        output:
            checkpoints=[directory(checkpoint_dir("{model}", step)) for step in STEPS],
            history="results/training/{model}.parquet",
        log:
            "logs/checkpoints/train_{model}.log",
        benchmark:
            "benchmarks/checkpoints/train_{model}.tsv"
        conda:
            "../envs/torch.yaml"
        threads: MINISUITE["threads"]
        resources:
            mem_mb=3000,
            runtime=60,
        params:
            model=minisuite_model,
            vocab=minisuite_vocab(),
            steps=STEPS,
            setup={
                k: MINISUITE[k]
                for k in (
                    "batch_size",
                    "learning_rate",
                    "min_lr_ratio",
                    "warmup_steps",
                    "weight_decay",
                    "grad_clip",
                )
            },
            seed=config["seed"],
        script:
            "../scripts/train_minisuite.py"

else:

    rule download_checkpoint:
        output:
            # temp: a checkpoint stays on disk only while a job still needs it
            temp(directory(checkpoint_dir("{model}", "{step}"))),
        log:
            "logs/checkpoints/download_{model}_step{step}.log",
        retries: HUB["retries"]
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=120,
        params:
            repo_id=lambda wildcards: REPO_ID[wildcards.model],
            revision=lambda wildcards: HUB["revision_template"].format(
                step=wildcards.step
            ),
            allow_pickle=CKPT["allow_pickle"],
        script:
            "../scripts/download_checkpoint.py"
