# Seed -> evolution rounds 1..K -> merged training set.


rule seed:
    input:
        get_seed_file,
    output:
        "results/seed/seed.jsonl",
    log:
        "logs/seed/seed.log",
    conda:
        "../envs/cpu.yaml"
    container:
        container_for("cpu")
    params:
        source=config["seed"]["source"],
        limit=lambda w: (
            ""
            if config["seed"]["limit"] is None
            else f"--limit {config['seed']['limit']}"
        ),
        fallback="--fallback-builtin" if config["seed"]["fallback_builtin"] else "",
        sample_seed=config["seed"]["sample_seed"],
        code=code_version("seed"),
    shell:
        "evolcoder seed --source {params.source:q} {params.limit} --sample-seed {params.sample_seed}"
        " {params.fallback} --out {output} > {log} 2>&1"


rule evolve_round:
    input:
        pool=get_round_pool,
    output:
        evolved="results/evolve/round_{k}/evolved.jsonl",
        rejects="results/evolve/round_{k}/rejects.jsonl",
        pool="results/evolve/round_{k}/pool.jsonl",
        stats="results/evolve/round_{k}/stats.json",
        ledger="results/evolve/round_{k}/ledger.json",
    log:
        "logs/evolve/round_{k}.log",
    benchmark:
        "logs/benchmarks/evolve/round_{k}.tsv"
    conda:
        "../envs/cpu.yaml"
    container:
        container_for("cpu")
    threads: 2
    params:
        # every key but how many rounds: adding a round must not make the finished rounds stale
        settings=settings("evolve"),
        out_dir=subpath(output.evolved, parent=True),
        code=code_version("evolve"),
    shell:
        "evolcoder evolve --pool {input.pool} --round {wildcards.k} --out-dir {params.out_dir}"
        " --settings-json {params.settings} --cache-dir results/cache/llm > {log} 2>&1"


rule evolution_stats_plot:
    input:
        get_round_stats,
    output:
        report(
            "results/evolve/stats.png",
            caption="../report/evolution_stats.rst",
            category="Evolution",
        ),
    log:
        "logs/evolve/stats_plot.log",
    localrule: True
    conda:
        "../envs/cpu.yaml"
    container:
        container_for("cpu")
    params:
        code=code_version("plot-evolution"),
    shell:
        "evolcoder plot-evolution --out {output} {input} > {log} 2>&1"


rule merge:
    input:
        seed="results/seed/seed.jsonl",
        rounds=get_evolved_rounds,
    output:
        train="results/merged/train.jsonl",
        stats=report(
            "results/merged/stats.json",
            caption="../report/merge_stats.rst",
            category="Dataset",
        ),
        decontamination="results/merged/decontamination.json",
    log:
        "logs/merge/merge.log",
    conda:
        "../envs/cpu.yaml"
    container:
        container_for("cpu")
    params:
        rounds=merge_round_args,
        settings=settings("merge"),
        data=as_json(config["data"]),
        code=code_version("merge"),
    shell:
        "evolcoder merge --seed {input.seed} {params.rounds} --out-dir results/merged"
        " --settings-json {params.settings} --data-json {params.data} > {log} 2>&1"


rule merge_rounds:
    input:
        seed="results/seed/seed.jsonl",
        rounds=get_rounds_upto,
    output:
        train="results/merged/rounds_{k}/train.jsonl",
        stats="results/merged/rounds_{k}/stats.json",
        decontamination="results/merged/rounds_{k}/decontamination.json",
    log:
        "logs/merge/rounds_{k}.log",
    conda:
        "../envs/cpu.yaml"
    container:
        container_for("cpu")
    params:
        rounds=merge_round_args,
        settings=settings("merge"),
        data=as_json(config["data"]),
        out_dir=subpath(output.train, parent=True),
        code=code_version("merge"),
    shell:
        "evolcoder merge --seed {input.seed} {params.rounds} --out-dir {params.out_dir}"
        " --settings-json {params.settings} --data-json {params.data} > {log} 2>&1"
