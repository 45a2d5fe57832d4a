include: "figures_inputs.smk"


# One rule per figure, each registered in the report with its caption.
for fig, spec in RUN_FIGURES.items():

    rule:
        name:
            fig
        input:
            **figure_inputs(spec),
        output:
            png=report(
                PATH["figure_png"].format(fig=fig),
                caption=f"../report/{fig}.rst",
                category="Saturation and the softmax bottleneck",
                subcategory=spec.group,
            ),
            pdf=PATH["figure_pdf"].format(fig=fig),
            csv=report(
                PATH["figure_csv"].format(fig=fig),
                caption="../report/plotted.rst",
                category="Saturation and the softmax bottleneck",
                subcategory=spec.group,
                labels={"figure": fig, "file": "plotted numbers (CSV)"},
            ),
        log:
            f"logs/figures/{fig}.log",
        localrule: True
        conda:
            "../envs/analysis.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            code=code_of("figure.py"),
            figure=fig,
            style=config["figures"],
            link=NGRAMS["link"] if fig == "fig8_loss_vs_w_error" else None,
        script:
            "../scripts/figure.py"
