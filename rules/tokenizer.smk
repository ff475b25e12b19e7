rule train_tokenizer:
    input:
        docs="results/data/{corpus}/train.parquet",
    output:
        model="results/tokenizer/{corpus}_sp{vocab}.model",
    log:
        "logs/train_tokenizer/{corpus}_sp{vocab}.log",
    conda:
        "../envs/data.yaml"
    threads: TOKENIZE_THREADS
    params:
        max_docs=json.dumps(config["tokenizer"]["train_docs"]),
    shell:
        "python -m speedlab.data.tokenizer train --docs {input.docs:q} --model {output.model:q}"
        " --vocab-size {wildcards.vocab} --max-docs {params.max_docs:q} --threads {threads}"
        " > {log:q} 2>&1"


rule count_token_bytes:
    input:
        model="results/tokenizer/{corpus}_sp{vocab}.model",
    output:
        table="results/shards/{corpus}_sp{vocab}/token_bytes.npy",
    log:
        "logs/count_token_bytes/{corpus}_sp{vocab}.log",
    conda:
        "../envs/data.yaml"
    shell:
        "python -m speedlab.data.tokenizer bytes --model {input.model:q} --out {output.table:q}"
        " > {log:q} 2>&1"


rule tokenize_split:
    input:
        docs="results/data/{corpus}/{split}.parquet",
        model="results/tokenizer/{corpus}_sp{vocab}.model",
    output:
        manifest="results/shards/{corpus}_sp{vocab}/fineweb_{split}.json",
    log:
        "logs/tokenize_split/{corpus}_sp{vocab}_{split}.log",
    conda:
        "../envs/data.yaml"
    threads: TOKENIZE_THREADS
    params:
        shard_tokens=config["tokenizer"]["shard_tokens"],
    shell:
        "python -m speedlab.data.tokenizer encode --docs {input.docs:q} --model {input.model:q}"
        " --out-dir $(dirname {output.manifest:q}) --split {wildcards.split}"
        " --shard-tokens {params.shard_tokens} --threads {threads} > {log:q} 2>&1"
