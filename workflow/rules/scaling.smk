include: "scaling_inputs.smk"


rule scaling_fit:
    input:
        unpack(scaling_fit_inputs),
    output:
        saturation="results/tables/saturation.parquet",
        fit="results/tables/scaling_fit.parquet",
        points="results/tables/scaling_points.parquet",
        by_size="results/tables/saturation_by_size.parquet",
    log:
        "logs/tables/scaling_fit.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_of("scaling_fit.py"),
        scaling=config["scaling"],
        seed=config["seed"],
    script:
        "../scripts/scaling_fit.py"
