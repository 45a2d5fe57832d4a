include: "metrics_inputs.smk"


rule measure_checkpoint:
    input:
        unpack(measure_inputs),
    output:
        metrics="results/metrics/{job}/metrics.parquet",
        spectrum="results/metrics/{job}/spectrum.parquet",
        checkpoint="results/metrics/{job}/checkpoint.parquet",
        documents="results/metrics/{job}/documents.parquet",
        truncation="results/metrics/{job}/truncation.parquet",
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
        metrics=for_each_measure_job("results/metrics/{job}/metrics.parquet"),
        spectra=for_each_measure_job("results/metrics/{job}/spectrum.parquet"),
        checkpoints=for_each_measure_job("results/metrics/{job}/checkpoint.parquet"),
        documents=for_each_measure_job("results/metrics/{job}/documents.parquet"),
        truncation=for_each_measure_job("results/metrics/{job}/truncation.parquet"),
    output:
        metrics="results/tables/checkpoint_metrics.parquet",
        spectra="results/tables/spectra.parquet",
        checkpoints="results/tables/checkpoints.parquet",
        documents="results/tables/document_losses.parquet",
        truncation="results/tables/truncated_heads.parquet",
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
