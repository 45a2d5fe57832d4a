include: "acquisition_inputs.smk"


if SOURCE == "minisuite":

    rule train_minisuite:
        input:
            train=PATH["corpus"].format(split="train"),
        output:
            checkpoints=[directory(checkpoint_dir("{model}", step)) for step in STEPS],
            history=PATH["training_history"],
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
            code=code_of("train_minisuite.py"),
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

elif SOURCE == "hub":

    rule revision_manifest:
        output:
            revision_manifest("{model}"),
        log:
            "logs/checkpoints/manifest_{model}.log",
        localrule: True
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=30,
        params:
            code=code_of("revision_manifest.py"),
            manifest=manifest_params,
        script:
            "../scripts/revision_manifest.py"

    rule prefetch_checkpoint:
        input:
            manifest=lambda wildcards: revision_manifest(wildcards.model),
        output:
            PATH["prefetched"],
        log:
            "logs/checkpoints/prefetch_{model}_step{step}.log",
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=120,
        params:
            code=code_of("prefetch_checkpoint.py"),
            allow_pickle=CHECKPOINT_CONFIG["allow_pickle"],
            retry=HUB_RETRY,
            heads=HUB_ACCESS["heads"] if SPECTRUM_ONLY else None,  # the head alone
        script:
            "../scripts/prefetch_checkpoint.py"
