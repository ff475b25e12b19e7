rule write_report:
    input:
        unpack(report_inputs),
        code=[module_code("report"), REPORT_TEMPLATE],
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
        options=report_options,
    shell:
        "python -m speedlab.analysis.report --options {params.options:q}"
        " --out {output.report:q} --html {output.html:q} > {log:q} 2>&1"
