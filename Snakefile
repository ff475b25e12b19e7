from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/tokenizer.smk"
include: "rules/train.smk"
include: "rules/quantize.smk"
include: "rules/analysis.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        expand(
            "results/studies/{study}/report.{ext}", study=STUDIES, ext=["md", "html"]
        ),
        tracking_targets(STUDIES),


# `snakemake plan` (or `make plan`): runs done and pending per study, GPU-hours and cost still
# needed; nothing is trained or submitted.
rule plan:
    log:
        "logs/plan.log",
    localrule: True
    conda:
        "envs/analysis.yaml"
    params:
        config=json.dumps(config),
    shell:
        "python -m speedlab.plan --config-json {params.config:q} 2>&1 | tee {log:q}"
