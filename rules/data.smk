rule prepare_corpus:
    output:
        train="results/data/{corpus}/train.parquet",
        val="results/data/{corpus}/val.parquet",
        source="results/data/{corpus}/source.json",
    log:
        "logs/prepare_corpus/{corpus}.log",
    conda:
        "../envs/data.yaml"
    params:
        data=json.dumps(config["data"], sort_keys=True),
    shell:
        "python -m speedlab.data --data {params.data:q} --train {output.train:q}"
        " --val {output.val:q} --source {output.source:q} 2>&1 | tee {log:q}"
