rule quantize_roundtrip:
    input:
        model="results/runs/{study}/{condition}/seed{seed}/model.pt",
        val=f"{SHARDS}/fineweb_val.json",
        token_bytes=f"{SHARDS}/token_bytes.npy",
    output:
        roundtrip="results/runs/{study}/{condition}/seed{seed}/roundtrip.json",
    log:
        "logs/quantize_roundtrip/{study}/{condition}/seed{seed}.log",
    conda:
        "../envs/train.yaml"
    threads: EXECUTION["train_threads"]
    shell:
        "python -m speedlab.train.quantize --model {input.model:q} --val {input.val:q}"
        " --token-bytes {input.token_bytes:q} --out {output.roundtrip:q} --threads {threads}"
        " > {log:q} 2>&1"
