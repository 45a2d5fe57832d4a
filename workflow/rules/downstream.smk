include: "downstream_inputs.smk"


# Downstream evaluation with lm-evaluation-harness (Table 1). The best checkpoint is known only
# once the metrics are in, so `select_downstream` is a Snakemake checkpoint: the dry run shows
# it, and the evaluation jobs appear when it has run.
if DOWNSTREAM["activate"]:
    if SYNTHETIC:  # local tasks and the word-level tokenizer of the synthetic ids

        rule downstream_tasks:
            input:
                eval=PATH["corpus"].format(split="eval"),
            output:
                directory(PATH["downstream_tasks"]),
            log:
                "logs/downstream/tasks.log",
            localrule: True
            conda:
                "../envs/torch.yaml"
            threads: 1
            resources:
                mem_mb=2000,
                runtime=10,
            params:
                code=code_of("downstream_tasks.py"),
                tasks={
                    "vocab_size": CORPUS["synthetic"]["vocab_size"],
                    "n_items": DOWNSTREAM["local_items"],
                    "context_tokens": DOWNSTREAM["context_tokens"],
                    "choices": DOWNSTREAM["choices"],
                    "seed": config["seed"],
                },
            script:
                "../scripts/downstream_tasks.py"

    else:  # the harness's own tasks, whose data sets come from the hub

        rule story_cloze_task:
            # StoryCloze's CSV files (distributed by request) as the harness's task.
            output:
                PATH["story_cloze_task"],
            log:
                "logs/downstream/story_cloze_task.log",
            localrule: True
            conda:
                "../envs/torch.yaml"
            threads: 1
            resources:
                mem_mb=1000,
                runtime=5,
            params:
                code=code_of("story_cloze_task.py"),
                folder=DOWNSTREAM["story_cloze_dir"],
            script:
                "../scripts/story_cloze_task.py"

        rule prefetch_tasks:
            # Where the network is: the tasks' data sets into the datasets cache, loaded as
            # the harness loads them, so that evaluation jobs run offline.
            input:
                story_cloze=STORY_CLOZE_TASK or [],
            output:
                PATH["prefetched_tasks"],
            log:
                "logs/downstream/prefetch_tasks.log",
            conda:
                "../envs/torch.yaml"
            threads: 1
            resources:
                mem_mb=4000,
                runtime=60,
            params:
                code=code_of("prefetch_tasks.py"),
                tasks=HARNESS_TASKS,
                include_path=HARNESS_INCLUDE,
                retry=HUB_RETRY,
                missing=MISSING_TASKS,
            script:
                "../scripts/prefetch_tasks.py"

    checkpoint select_downstream:
        input:
            metrics=TABLES["checkpoint_metrics"],
        output:
            PATH["selection"],
        log:
            "logs/downstream/selection.log",
        localrule: True
        conda:
            "../envs/analysis.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            code=code_of("select_downstream.py"),
            models=DOWNSTREAM_MODELS,
            steps=DOWNSTREAM["steps"],
        script:
            "../scripts/select_downstream.py"

    rule evaluate_downstream:
        input:
            unpack(downstream_inputs),
        output:
            table=PATH["downstream_part"],
            raw=PATH["downstream_raw"],
        log:
            "logs/downstream/{job}.log",
        benchmark:
            "benchmarks/downstream/{job}.tsv"
        wildcard_constraints:
            job=CHECKPOINT_JOB,
        conda:
            "../envs/torch.yaml"
        threads: DOWNSTREAM["threads"]
        resources:
            mem_mb=DOWNSTREAM["mem_mb"],
            runtime=lambda wildcards: DOWNSTREAM["runtime"]
            * len(evaluation_job(wildcards)),
            gpu=DOWNSTREAM["gpu"],
        params:
            code=code_of("evaluate_downstream.py"),
            evaluations=downstream_params,
            allow_pickle=CHECKPOINT_CONFIG["allow_pickle"],
            hub=HUB_ACCESS,
            include_path=HARNESS_INCLUDE,
            harness={
                "tasks": HARNESS_TASKS,
                **{
                    k: DOWNSTREAM[k]
                    for k in ("num_fewshot", "batch_size", "limit", "device", "dtype")
                },
            },
            seed=config["seed"],
        script:
            "../scripts/evaluate_downstream.py"

    rule aggregate_downstream:
        input:
            selection=PATH["selection"],
            evaluations=downstream_evaluations,
            raw=downstream_raw,
        output:
            table=PATH["downstream"],
            md=PATH["table1_md"],
            tex=PATH["table1_tex"],
            html=report(
                PATH["table1_html"],
                caption="../report/table1.rst",
                category="Saturation and the softmax bottleneck",
                subcategory="Downstream evaluation",
            ),
        log:
            "logs/downstream/aggregate.log",
        localrule: True
        conda:
            "../envs/analysis.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            code=code_of("aggregate_downstream.py"),
            models=DOWNSTREAM_MODELS,
            level=config["scaling"]["saturation_level"],
            missing=MISSING_TASKS,
        script:
            "../scripts/aggregate_downstream.py"
