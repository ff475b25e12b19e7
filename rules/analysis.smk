rule import_log:
    input:
        log=lambda w: imported_log(w)["log"],
        code=module_code("import_logs"),
    output:
        runs="results/studies/{study}/imported/{condition}/seed{seed}.runs.parquet",
        curves="results/studies/{study}/imported/{condition}/seed{seed}.curves.parquet",
    log:
        "logs/import_log/{study}/{condition}/seed{seed}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        format=lambda w: imported_log(w)["format"],
    shell:
        "python -m speedlab.analysis.import_logs --study {wildcards.study}"
        " --condition {wildcards.condition} --seed {wildcards.seed} --format {params.format}"
        " --runs-out {output.runs:q} --curves-out {output.curves:q} {input.log:q} > {log:q} 2>&1"


rule collect_runs:
    input:
        summaries=study_run_files("summary.json"),
        roundtrips=study_run_files("roundtrip.json"),
        metrics=study_run_files("metrics.jsonl"),
        imported=study_import_files,
        code=module_code("collect"),
    output:
        runs="results/studies/{study}/runs.parquet",
        curves="results/studies/{study}/curves.parquet",
    log:
        "logs/collect_runs/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        options=collect_options,
    shell:
        "python -m speedlab.analysis.collect --options {params.options:q}"
        " --summaries {input.summaries:q} --runs-out {output.runs:q}"
        " --curves-out {output.curves:q} > {log:q} 2>&1"


rule compute_stats:
    input:
        runs="results/studies/{study}/runs.parquet",
        code=module_code("stats"),
    output:
        stats="results/studies/{study}/stats.csv",
        json="results/studies/{study}/stats.json",
    log:
        "logs/compute_stats/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        options=stats_options,
    shell:
        "python -m speedlab.analysis.stats --options {params.options:q} --runs {input.runs:q}"
        " --out {output.stats:q} --json {output.json:q} > {log:q} 2>&1"


# Every figure of speedlab.analysis.figure_list.PLOTTED: what it plots, from which table, and
# where Snakemake's report files it.
rule plot_figure:
    input:
        table=figure_table,
        code=[module_code("figures"), module_code("figure_list")],
    output:
        figure=report(
            "results/studies/{study}/figures/{figure}.png",
            category="{study}",
            subcategory=lambda w: FIGURES[w.figure].subcategory,
            labels=lambda w: {"figure": FIGURES[w.figure].label},
        ),
        pdf="results/studies/{study}/figures/{figure}.pdf",
    log:
        "logs/plot_figure/{study}/{figure}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        options=figure_options,
    shell:
        "python -m speedlab.analysis.figures --options {params.options:q} --table {input.table:q}"
        " --out {output.figure:q} > {log:q} 2>&1"


rule analyse_sweep:
    input:
        runs="results/studies/{study}/runs.parquet",
        code=module_code("sweep"),
    output:
        table="results/studies/{study}/sweep.csv",
        figure=report(
            "results/studies/{study}/figures/sweep.png",
            category="{study}",
            subcategory=FIGURES["sweep"].subcategory,
            labels={"figure": FIGURES["sweep"].label},
        ),
        pdf="results/studies/{study}/figures/sweep.pdf",
    log:
        "logs/analyse_sweep/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        options=sweep_options,
    shell:
        "python -m speedlab.analysis.sweep --options {params.options:q} --runs {input.runs:q}"
        " --table-out {output.table:q} --figure-out {output.figure:q} > {log:q} 2>&1"


rule fit_scaling:
    input:
        runs="results/studies/{study}/runs.parquet",
        code=module_code("scaling"),
    output:
        fit="results/studies/{study}/scaling.json",
        figure=report(
            "results/studies/{study}/figures/scaling.png",
            category="{study}",
            subcategory=FIGURES["scaling"].subcategory,
            labels={"figure": FIGURES["scaling"].label},
        ),
        pdf="results/studies/{study}/figures/scaling.pdf",
    log:
        "logs/fit_scaling/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        options=scaling_options,
    shell:
        "python -m speedlab.analysis.scaling --options {params.options:q} --runs {input.runs:q}"
        " --json-out {output.fit:q} --figure-out {output.figure:q} > {log:q} 2>&1"
