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
        baseline=study_param("baseline"),
    shell:
        "python -m speedlab.analysis.collect --study {wildcards.study} --baseline {params.baseline}"
        " --summaries {input.summaries:q} --imported {input.imported:q}"
        " --runs-out {output.runs:q}"
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
        metric=study_param("metric"),
        baseline=study_param("baseline"),
        conditions=study_condition_list,
        n_seeds=lambda w: planned_seeds(study_of(w)),
    shell:
        "python -m speedlab.analysis.stats --runs {input.runs:q} --metric {params.metric},train_time_s"
        " --baseline {params.baseline} --conditions {params.conditions}"
        " --planned-seeds {params.n_seeds} --out {output.stats:q} --json {output.json:q}"
        " > {log:q} 2>&1"


rule plot_curves:
    input:
        curves="results/studies/{study}/curves.parquet",
        code=module_code("figures"),
    output:
        figure=report(
            "results/studies/{study}/figures/{metric}_vs_{x}.png",
            category="{study}",
            subcategory="Training curves",
            labels={"figure": "{metric} vs {x}"},
        ),
        pdf="results/studies/{study}/figures/{metric}_vs_{x}.pdf",
    log:
        "logs/plot_curves/{study}_{metric}_vs_{x}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        baseline=study_param("baseline"),
        conditions=study_condition_list,
    shell:
        "python -m speedlab.analysis.figures curves --curves {input.curves:q} --metric {wildcards.metric}"
        " --x {wildcards.x}"
        " --conditions {params.conditions} --baseline {params.baseline}"
        " --out {output.figure:q} > {log:q} 2>&1"


rule plot_final:
    input:
        runs="results/studies/{study}/runs.parquet",
        code=module_code("figures"),
    output:
        figure=report(
            "results/studies/{study}/figures/final_{metric}.png",
            category="{study}",
            subcategory="Final metric per condition",
            labels={"figure": "final {metric}"},
        ),
        pdf="results/studies/{study}/figures/final_{metric}.pdf",
    log:
        "logs/plot_final/{study}_{metric}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        baseline=study_param("baseline"),
        conditions=study_condition_list,
    shell:
        "python -m speedlab.analysis.figures final --runs {input.runs:q} --metric {wildcards.metric}"
        " --conditions {params.conditions} --baseline {params.baseline}"
        " --out {output.figure:q} > {log:q} 2>&1"


rule plot_quant_gap:
    input:
        runs="results/studies/{study}/runs.parquet",
        code=module_code("figures"),
    output:
        figure=report(
            "results/studies/{study}/figures/quantization_cost.png",
            category="{study}",
            subcategory="Final metric per condition",
            labels={"figure": "quantization cost"},
        ),
        pdf="results/studies/{study}/figures/quantization_cost.pdf",
    log:
        "logs/plot_quant_gap/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        baseline=study_param("baseline"),
        conditions=study_condition_list,
    shell:
        "python -m speedlab.analysis.figures quant --runs {input.runs:q}"
        " --conditions {params.conditions} --baseline {params.baseline}"
        " --out {output.figure:q} > {log:q} 2>&1"


rule plot_momentum:
    input:
        runs="results/studies/{study}/runs.parquet",
        code=module_code("figures"),
    output:
        figure=report(
            "results/studies/{study}/figures/momentum_per_layer.png",
            category="{study}",
            subcategory="Design",
            labels={"figure": "momentum per layer"},
        ),
        pdf="results/studies/{study}/figures/momentum_per_layer.pdf",
    log:
        "logs/plot_momentum/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        baseline=study_param("baseline"),
        conditions=study_condition_list,
    shell:
        "python -m speedlab.analysis.figures momentum --runs {input.runs:q}"
        " --conditions {params.conditions} --baseline {params.baseline}"
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
            subcategory="Sweep",
            labels={"figure": "metric vs swept value"},
        ),
        pdf="results/studies/{study}/figures/sweep.pdf",
    log:
        "logs/analyse_sweep/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        metric=study_param("metric"),
        key=lambda w: study_of(w)["sweep"]["key"],
        options=lambda w: sweep_options(study_of(w)["sweep"]),
    shell:
        "python -m speedlab.analysis.sweep --runs {input.runs:q} --key {params.key} --metric {params.metric}"
        " {params.options} --table-out {output.table:q} --figure-out {output.figure:q}"
        " > {log:q} 2>&1"


rule fit_scaling:
    input:
        runs="results/studies/{study}/runs.parquet",
        code=module_code("scaling"),
    output:
        fit="results/studies/{study}/scaling.json",
        figure=report(
            "results/studies/{study}/figures/scaling.png",
            category="{study}",
            subcategory="Sweep",
            labels={"figure": "scaling fit"},
        ),
        pdf="results/studies/{study}/figures/scaling.pdf",
    log:
        "logs/fit_scaling/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        metric=study_param("metric"),
        key=lambda w: study_of(w)["sweep"]["key"],
        group=lambda w: study_of(w)["sweep"]["group"],
        expect=lambda w: sweep_options(study_of(w)["sweep"], expect=True),
    shell:
        "python -m speedlab.analysis.scaling --runs {input.runs:q} --key {params.key}"
        " --group {params.group} --metric {params.metric} {params.expect}"
        " --json-out {output.fit:q} --figure-out {output.figure:q} > {log:q} 2>&1"


rule write_report:
    input:
        unpack(sweep_outputs),
        runs="results/studies/{study}/runs.parquet",
        stats="results/studies/{study}/stats.csv",
        curves="results/studies/{study}/figures/val_bpb_vs_step.png",
        by_time="results/studies/{study}/figures/val_bpb_vs_time_s.png",
        train_loss="results/studies/{study}/figures/train_loss_vs_step.png",
        final=lambda w: f"results/studies/{w.study}/figures/final_{study_of(w)['metric']}.png",
        quant="results/studies/{study}/figures/quantization_cost.png",
        time="results/studies/{study}/figures/final_train_time_s.png",
        code=module_code("report"),
    output:
        report=report(
            "results/studies/{study}/report.md",
            category="{study}",
            labels={"figure": "lab note"},
        ),
        html="results/studies/{study}/report.html",
    log:
        "logs/write_report/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        description=study_param("description"),
        metric=study_param("metric"),
        baseline=study_param("baseline"),
        n_seeds=lambda w: planned_seeds(study_of(w)),
        extras=lambda w, input: report_options(input),
        conditions=lambda w: json.dumps(study_of(w)["conditions"], sort_keys=True),
        published=lambda w: json.dumps(study_of(w)["published"], sort_keys=True),
        scale=config.get("scale") or "default",
    shell:
        "python -m speedlab.analysis.report --study {wildcards.study} --description={params.description:q}"
        " --runs {input.runs:q} --stats {input.stats:q} --metric {params.metric}"
        " --baseline {params.baseline} --planned-seeds {params.n_seeds}"
        " --figure 'Validation bpb vs step='{input.curves:q}"
        " --figure 'Final {params.metric} per condition='{input.final:q}"
        " --figure 'Validation bpb vs training time='{input.by_time:q}"
        " --figure 'Train loss vs step='{input.train_loss:q}"
        " --figure 'Quantization cost per run='{input.quant:q}"
        " --figure 'Training time per condition='{input.time:q}"
        " --conditions {params.conditions:q} --published {params.published:q}"
        " --scale {params.scale} {params.extras}"
        " --out {output.report:q} --html {output.html:q} > {log:q} 2>&1"
