rule train_run:
    input:
        unpack(hellaswag_input),
        train=f"{SHARDS}/fineweb_train.json",
        val=f"{SHARDS}/fineweb_val.json",
        token_bytes=f"{SHARDS}/token_bytes.npy",
    output:
        metrics="results/runs/{study}/{condition}/seed{seed}/metrics.jsonl",
        summary="results/runs/{study}/{condition}/seed{seed}/summary.json",
        model="results/runs/{study}/{condition}/seed{seed}/model.pt",
        # The weights for other tools: safetensors and the config that rebuilds the model.
        weights="results/runs/{study}/{condition}/seed{seed}/model.safetensors",
        weights_config="results/runs/{study}/{condition}/seed{seed}/config.json",
        provenance="results/runs/{study}/{condition}/seed{seed}/provenance.json",
        # The int8+zlib export scored on the training device(s) at the end of the job.
        roundtrip="results/runs/{study}/{condition}/seed{seed}/roundtrip.json",
    log:
        "logs/train_run/{study}/{condition}/seed{seed}.log",
    benchmark:
        "benchmarks/train_run/{study}/{condition}/seed{seed}.tsv"
    conda:
        "../envs/train.yaml"
    threads: train_threads
    resources:
        gpu_model=run_gpu_model,
        # per node (SLURM's --mem)
        mem_mb=lambda w: 4000 + run_gpus(w) * EXECUTION["mem_mb_per_gpu"],
        runtime=train_runtime,
        gpu=run_gpu_total,
        # train.nodes > 1: --nodes, GPUs per node as GRES, a CPU run's one task per node
        nodes=run_nodes,
        gres=run_gres,
        tasks=run_tasks,
        # SLURM: SIGUSR1 5 minutes before the time limit; the trainer checkpoints and exits,
        # and the retry (with twice the runtime) resumes.
        slurm_extra="--signal=USR1@300",
    params:
        config=run_config_json,
        # One launch per job: torchrun starts the processes of a multi-GPU run itself.
        launcher=train_launcher,
        # Not an output: Snakemake must not delete it when a preempted job is rerun.
        checkpoints="results/checkpoints/{study}/{condition}/seed{seed}",
    shell:
        "{params.launcher} -m speedlab.train.loop --config {params.config:q} --seed {wildcards.seed}"
        " --train {input.train:q} --val {input.val:q} --token-bytes {input.token_bytes:q}"
        " --out-dir $(dirname {output.summary:q}) --threads {threads}"
        " --study {wildcards.study} --condition {wildcards.condition}"
        ' --checkpoint-dir {params.checkpoints:q} --tracking "$SPEEDLAB_TRACKING"'
        " > {log:q} 2>&1"


# A condition with trainer.kind: command runs the user's own script (speedlab.train.external):
# the same runs.parquet row, provenance, resources and retries as a speedlab run, under
# results/external/ (no model.pt: the script keeps its own weights in the work folder).
rule run_trainer_command:
    input:
        unpack(trainer_inputs),
    output:
        metrics="results/external/{study}/{condition}/seed{seed}/metrics.jsonl",
        summary="results/external/{study}/{condition}/seed{seed}/summary.json",
        provenance="results/external/{study}/{condition}/seed{seed}/provenance.json",
        roundtrip="results/external/{study}/{condition}/seed{seed}/roundtrip.json",
        # The log the metrics were read from, as the script wrote it.
        trainer_log="results/external/{study}/{condition}/seed{seed}/train.log",
    log:
        "logs/run_trainer_command/{study}/{condition}/seed{seed}.log",
    benchmark:
        "benchmarks/run_trainer_command/{study}/{condition}/seed{seed}.tsv"
    conda:
        "../envs/train.yaml"
    threads: train_threads
    resources:
        **GPU_MODEL,
        mem_mb=lambda w: 4000 + run_gpus(w) * EXECUTION["mem_mb_per_gpu"],
        runtime=train_runtime,
        gpu=run_gpus,
        slurm_extra="--signal=USR1@300",
    params:
        config=run_config_json,
        metric=lambda w: required_metric(w.study),
        paths=trainer_paths,
        # Not an output: kept across a retry, so a script that resumes finds its files.
        work_dir="results/external/{study}/{condition}/seed{seed}/work",
    shell:
        "python -m speedlab.train.external run --config {params.config:q}"
        " --seed {wildcards.seed} --study {wildcards.study} --condition {wildcards.condition}"
        " --metric {params.metric} --out-dir $(dirname {output.summary:q})"
        " --work-dir {params.work_dir:q} {params.paths}"
        ' --tracking "$SPEEDLAB_TRACKING" > {log:q} 2>&1'


# A git source (trainer.source: {git, commit}) is cloned once, at its pinned commit.
rule fetch_trainer:
    output:
        source=directory("results/trainers/{trainer}"),
    log:
        "logs/fetch_trainer/{trainer}.log",
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        git=lambda w: trainer_source(w.trainer)["git"],
        commit=lambda w: trainer_source(w.trainer)["commit"],
    shell:
        "python -m speedlab.train.external fetch --git {params.git:q} --commit {params.commit}"
        " --out {output.source:q} > {log:q} 2>&1"
