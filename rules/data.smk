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
        data=json.dumps(corpus_params(config["data"]), sort_keys=True),
    shell:
        "python -m speedlab.data.documents --data {params.data:q} --train {output.train:q}"
        " --val {output.val:q} --source {output.source:q} 2>&1 | tee {log:q}"


rule fetch_pretokenized:
    output:
        train="results/shards/pretokenized/{preset}/fineweb_train.json",
        val="results/shards/pretokenized/{preset}/fineweb_val.json",
        token_bytes="results/shards/pretokenized/{preset}/token_bytes.npy",
    log:
        "logs/fetch_pretokenized/{preset}.log",
    conda:
        "../envs/data.yaml"
    params:
        train_shards=config["data"]["pretokenized"]["train_shards"],
        revision=config["data"]["pretokenized"]["revision"],
    shell:
        "python -m speedlab.data.pretokenized --preset {wildcards.preset}"
        " --train-shards {params.train_shards} --revision {params.revision}"
        " --out-dir $(dirname {output.train:q}) > {log:q} 2>&1"


# eval.hellaswag: the first N validation examples, from the hub (speedlab.data.hellaswag).
rule prepare_hellaswag:
    output:
        examples="results/data/hellaswag/val_{examples}.jsonl",
    log:
        "logs/prepare_hellaswag/{examples}.log",
    wildcard_constraints:
        examples=r"[1-9]\d*",
    localrule: True
    conda:
        "../envs/data.yaml"
    shell:
        "python -m speedlab.data.hellaswag --examples {wildcards.examples}"
        " --out {output.examples:q} > {log:q} 2>&1"
