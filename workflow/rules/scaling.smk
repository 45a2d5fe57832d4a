include: "scaling_inputs.smk"


rule scaling_fit:
    input:
        unpack(scaling_fit_inputs),
    output:
        saturation=PATH["saturation"],
        scaling_fit=PATH["scaling_fit"],
        scaling_points=PATH["scaling_points"],
        saturation_by_size=PATH["saturation_by_size"],
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
