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
        args=import_log_args,
    shell:
        "python -m speedlab.analysis.import_logs --study {wildcards.study}"
        " --condition {wildcards.condition} --seed {wildcards.seed} {params.args}"
        " --runs-out {output.runs:q} --curves-out {output.curves:q} {input.log:q} > {log:q} 2>&1"


rule collect_runs:
    input:
        summaries=study_run_files("summary.json"),
        roundtrips=study_run_files("roundtrip.json"),
        metrics=study_run_files("metrics.jsonl"),
        imported=study_import_files,
        tables=study_tables,
        code=[module_code("collect"), module_code("imports")],
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
        unpack(stats_inputs),
        code=[module_code("stats"), module_code("decision"), module_code("power")],
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


# The study's verdicts and per-seed deltas in its tracker group (one more tracker run,
# <study>/analysis); `all` wants it only when tracking.backend is set (tracking_targets).
rule track_study:
    input:
        runs="results/studies/{study}/runs.parquet",
        stats="results/studies/{study}/stats.csv",
        code=[module_code("tracked"), f"{SRC}/speedlab/train/tracking.py"],
    output:
        record="results/studies/{study}/tracking.json",
    log:
        "logs/track_study/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        options=tracking_options,
    shell:
        "python -m speedlab.analysis.tracked --options {params.options:q} --runs {input.runs:q}"
        " --stats {input.stats:q} --out {output.record:q} > {log:q} 2>&1"


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
        tests="results/studies/{study}/sweep_tests.csv",
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
        " --table-out {output.table:q} --tests-out {output.tests:q}"
        " --figure-out {output.figure:q} > {log:q} 2>&1"


# The sweep's best value and its default, per group: the confirmation runs wait for it.
checkpoint pick_confirmation:
    input:
        table="results/studies/{study}/sweep.csv",
        runs="results/studies/{study}/runs.parquet",
        code=module_code("sweep"),
    output:
        picks="results/studies/{study}/confirm/picks.json",
    log:
        "logs/pick_confirmation/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        options=sweep_options,
    shell:
        "python -m speedlab.analysis.sweep picks --options {params.options:q}"
        " --runs {input.runs:q} --table {input.table:q} --out {output.picks:q} > {log:q} 2>&1"


rule collect_confirmation:
    input:
        summaries=confirm_run_files,
        roundtrips=lambda w: [
            p.replace("summary.json", "roundtrip.json") for p in confirm_run_files(w)
        ],
        code=module_code("collect"),
    output:
        runs="results/studies/{study}/confirm/runs.parquet",
        curves="results/studies/{study}/confirm/curves.parquet",
    log:
        "logs/collect_confirmation/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        options=collect_options,
    shell:
        "python -m speedlab.analysis.collect --options {params.options:q}"
        " --summaries {input.summaries:q} --runs-out {output.runs:q}"
        " --curves-out {output.curves:q} > {log:q} 2>&1"


rule confirm_sweep:
    input:
        runs="results/studies/{study}/confirm/runs.parquet",
        picks="results/studies/{study}/confirm/picks.json",
        code=module_code("sweep"),
    output:
        table="results/studies/{study}/confirm.csv",
    log:
        "logs/confirm_sweep/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        options=confirm_options,
    shell:
        "python -m speedlab.analysis.sweep confirm --options {params.options:q}"
        " --runs {input.runs:q} --out {output.table:q} > {log:q} 2>&1"


# Adaptive designs: each look's interim analysis decides which comparisons get more seeds.
checkpoint interim_analysis:
    input:
        unpack(interim_inputs),
        code=[module_code("sequential"), module_code("decision")],
    output:
        doc="results/studies/{study}/looks/look{look}.json",
    log:
        "logs/interim_analysis/{study}/look{look}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        options=interim_options,
    shell:
        "python -m speedlab.analysis.sequential interim --options {params.options:q}"
        " --summaries {input.summaries:q} --out {output.doc:q} > {log:q} 2>&1"


rule finish_sequential:
    input:
        doc=final_look_doc,
        code=module_code("sequential"),
    output:
        doc="results/studies/{study}/sequential.json",
    log:
        "logs/finish_sequential/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        "python -m speedlab.analysis.sequential final --doc {input.doc:q}"
        " --out {output.doc:q} > {log:q} 2>&1"


rule plot_sequential:
    input:
        doc="results/studies/{study}/sequential.json",
        code=module_code("sequential"),
    output:
        figure=report(
            "results/studies/{study}/figures/sequential.png",
            category="{study}",
            subcategory=FIGURES["sequential"].subcategory,
            labels={"figure": FIGURES["sequential"].label},
        ),
    log:
        "logs/plot_sequential/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    shell:
        "python -m speedlab.analysis.sequential plot --doc {input.doc:q}"
        " --out {output.figure:q} > {log:q} 2>&1"


# The decision rule at every validation step (record, known_sigma, target): the earliest step
# at which it passes, the same step for every run.
rule evaluate_rule_steps:
    input:
        runs="results/studies/{study}/runs.parquet",
        curves="results/studies/{study}/curves.parquet",
        code=[module_code("curves"), module_code("decision")],
    output:
        table="results/studies/{study}/rule_steps.csv",
        figure=report(
            "results/studies/{study}/figures/rule_over_steps.png",
            category="{study}",
            subcategory=FIGURES["rule_over_steps"].subcategory,
            labels={"figure": FIGURES["rule_over_steps"].label},
        ),
    log:
        "logs/evaluate_rule_steps/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        options=rule_steps_options,
    shell:
        "python -m speedlab.analysis.curves --options {params.options:q}"
        " --curves {input.curves:q} --runs {input.runs:q}"
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


# Compute as an axis: each condition's compute multiplier against the baseline (bootstrap over
# seeds) and the validation curves against training FLOPs.
rule compare_compute:
    input:
        runs="results/studies/{study}/runs.parquet",
        curves="results/studies/{study}/curves.parquet",
        code=module_code("compute"),
    output:
        table="results/studies/{study}/compute.csv",
        figure=report(
            "results/studies/{study}/figures/metric_vs_flops.png",
            category="{study}",
            subcategory=FIGURES["metric_vs_flops"].subcategory,
            labels={"figure": FIGURES["metric_vs_flops"].label},
        ),
        pdf="results/studies/{study}/figures/metric_vs_flops.pdf",
    log:
        "logs/compare_compute/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        options=compute_options,
    shell:
        "python -m speedlab.analysis.compute --options {params.options:q}"
        " --runs {input.runs:q} --curves {input.curves:q} --table-out {output.table:q}"
        " --figure-out {output.figure:q} > {log:q} 2>&1"
