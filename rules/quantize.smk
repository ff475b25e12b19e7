# The training job writes roundtrip.json itself. This rule recomputes the roundtrip of a finished
# run from its model.pt under a named scheme (roundtrip_simple.json, roundtrip_parameter_golf.json)
# on the run's own GPU resources, with every thread it is given.
rule quantize_roundtrip:
    input:
        model="results/runs/{study}/{condition}/seed{seed}/model.pt",
        val=f"{SHARDS}/fineweb_val.json",
        token_bytes=f"{SHARDS}/token_bytes.npy",
    output:
        roundtrip="results/runs/{study}/{condition}/seed{seed}/roundtrip_{scheme}.json",
    log:
        "logs/quantize_roundtrip/{study}/{condition}/seed{seed}_{scheme}.log",
    wildcard_constraints:
        scheme="simple|parameter_golf",
    conda:
        "../envs/train.yaml"
    threads: train_threads
    resources:
        **GPU_MODEL,
        mem_mb=lambda w: 4000 + min(run_gpus(w), 1) * EXECUTION["mem_mb_per_gpu"],
        gpu=lambda w: min(run_gpus(w), 1),
    shell:
        "python -m speedlab.train.quantize --model {input.model:q} --val {input.val:q}"
        " --token-bytes {input.token_bytes:q} --out {output.roundtrip:q} --scheme {wildcards.scheme}"
        " --threads {threads} > {log:q} 2>&1"
