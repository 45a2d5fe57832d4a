include: "metrics_inputs.smk"


rule measure_checkpoint:
    input:
        unpack(measure_inputs),
    output:
        checkpoint_metrics=PATH["checkpoint_metrics_part"],
        head_spectra=PATH["head_spectra_part"],
        checkpoints=PATH["checkpoints_part"],
        document_losses=PATH["document_losses_part"],
        truncated_heads=PATH["truncated_heads_part"],
    log:
        "logs/metrics/{job}.log",
    benchmark:
        "benchmarks/metrics/{job}.tsv"
    wildcard_constraints:
        job=CHECKPOINT_JOB,
    conda:
        "../envs/torch.yaml"
    threads: METRICS["threads"]
    resources:
        mem_mb=METRICS["mem_mb"],
        runtime=lambda wildcards: METRICS["runtime"] * len(measure_job(wildcards)),
        gpu=METRICS["gpu"],
    params:
        code=code_of("measure_checkpoint.py"),
        measure={
            k: METRICS[k]
            for k in ("sequence_length", "batch_size", "dtype", "device", "parts")
        },
        checkpoints=measure_params,
        allow_pickle=CHECKPOINT_CONFIG["allow_pickle"],
        hub=HUB_ACCESS,
    script:
        "../scripts/measure_checkpoint.py"


rule aggregate_metrics:
    input:
        **{t: for_each_measure_job(PATH[f"{t}_part"]) for t in MEASURED_TABLES},
    output:
        **{t: PATH[t] for t in MEASURED_TABLES},
    log:
        "logs/tables/aggregate_metrics.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        code=code_of("aggregate_metrics.py"),
        trusted_steps=CHECKPOINT_CONFIG["trusted_steps"],
        unreadable=METRICS["unreadable"],
    script:
        "../scripts/aggregate_metrics.py"
