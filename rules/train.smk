rule train_run:
    input:
        train=f"{SHARDS}/fineweb_train.json",
        val=f"{SHARDS}/fineweb_val.json",
        token_bytes=f"{SHARDS}/token_bytes.npy",
    output:
        metrics="results/runs/{study}/{condition}/seed{seed}/metrics.jsonl",
        summary="results/runs/{study}/{condition}/seed{seed}/summary.json",
        model="results/runs/{study}/{condition}/seed{seed}/model.pt",
        provenance="results/runs/{study}/{condition}/seed{seed}/provenance.json",
    log:
        "logs/train_run/{study}/{condition}/seed{seed}.log",
    benchmark:
        "benchmarks/train_run/{study}/{condition}/seed{seed}.tsv"
    conda:
        "../envs/train.yaml"
    threads: EXECUTION["train_threads"]
    resources:
        mem_mb=4000,
    params:
        config=run_config_json,
        # Not an output: Snakemake must not delete it when a preempted job is rerun.
        checkpoints="results/checkpoints/{study}/{condition}/seed{seed}",
    shell:
        "python -m speedlab.train --config {params.config:q} --seed {wildcards.seed}"
        " --train {input.train:q} --val {input.val:q} --token-bytes {input.token_bytes:q}"
        " --out-dir $(dirname {output.summary:q}) --threads {threads}"
        " --study {wildcards.study} --condition {wildcards.condition}"
        " --checkpoint-dir {params.checkpoints:q} > {log:q} 2>&1"
