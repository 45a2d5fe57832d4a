# One rule per figure, each registered in the report with its caption.
for fig, needs in FIGURES.items():

    rule:
        name:
            fig
        input:
            **figure_inputs(needs),
        output:
            png=report(
                f"results/figures/{fig}.png",
                caption=f"../report/{fig}.rst",
                category="Saturation and the softmax bottleneck",
                subcategory=FIGURE_GROUPS[fig],
            ),
            pdf=f"results/figures/{fig}.pdf",
        params:
            figure=fig,
            style=config["figures"],
        log:
            f"logs/figures/{fig}.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../envs/analysis.yaml"
        script:
            "../scripts/figure.py"
