# Checkpoint -> predictions per benchmark (sharded) -> scores -> results table.


rule generate:
    input:
        model=get_model_input,
    output:
        "results/predictions/{model}/{benchmark}/{mode}.shards/{shard}.raw.jsonl",
    log:
        "logs/generate/{model}/{benchmark}/{mode}.{shard}.log",
    benchmark:
        "logs/benchmarks/generate/{model}/{benchmark}/{mode}.{shard}.tsv"
    conda:
        f"../envs/{plan.generation_family()}.yaml"
    container:
        container_for(plan.generation_family())
    threads: 2
    resources:
        **plan.generate_job_resources(),
    params:
        model=get_model_spec,
        data=get_data_path,
        options=benchmark_options,
        settings=settings("generate"),
        num_shards=config["evaluation"]["num_shards"],
        code=code_version("generate"),
    shell:
        "evolcoder generate --model {params.model:q} --benchmark {wildcards.benchmark}"
        " --data {params.data:q} {params.options} --shard {wildcards.shard} --num-shards {params.num_shards}"
        " --settings-json {params.settings} --gpus {resources.gpu} --out {output} > {log} 2>&1"


rule gather:
    input:
        get_shards,
    output:
        "results/predictions/{model}/{benchmark}/{mode}.jsonl",
    log:
        "logs/gather/{model}/{benchmark}/{mode}.log",
    conda:
        "../envs/cpu.yaml"
    container:
        container_for("cpu")
    params:
        data=get_data_path,
        options=benchmark_options,
        settings=settings("gather"),
        code=code_version("gather"),
    shell:
        "evolcoder gather --benchmark {wildcards.benchmark} --data {params.data:q} {params.options}"
        " --settings-json {params.settings} --out {output} {input} > {log} 2>&1"


rule timings:
    output:
        "results/timings/{benchmark}.pkl",
    log:
        "logs/timings/{benchmark}.log",
    benchmark:
        "logs/benchmarks/timings/{benchmark}.tsv"
    conda:
        "../envs/sandbox.yaml"
    container:
        container_for("sandbox")
    threads: sandbox_jobs
    params:
        data=get_data_path,
        settings=settings("timings"),
        code=code_version("timings"),
    shell:
        "evolcoder timings --benchmark {wildcards.benchmark} --data {params.data:q}"
        " --settings-json {params.settings} --jobs {threads} --out {output} > {log} 2>&1"


rule score:
    input:
        predictions=get_predictions,
        timings=get_timings,
    output:
        "results/scores/{model}/{benchmark}/{mode}.json",
    log:
        "logs/score/{model}/{benchmark}/{mode}.log",
    benchmark:
        "logs/benchmarks/score/{model}/{benchmark}/{mode}.tsv"
    conda:
        "../envs/sandbox.yaml"
    container:
        container_for("sandbox")
    threads: sandbox_jobs
    params:
        data=get_data_path,
        options=benchmark_options,
        settings=settings("score"),
        timings=timings_arg,
        code=code_version("score"),
    shell:
        "evolcoder score --benchmark {wildcards.benchmark} --predictions {input.predictions:q}"
        " --data {params.data:q} {params.options} --model-name {wildcards.model} --settings-json {params.settings} {params.timings}"
        " --jobs {threads}"
        " --out {output} > {log} 2>&1"


rule table:
    input:
        get_score_files,
    output:
        md=report(
            "results/scores.md", caption="../report/scores.rst", category="Scores"
        ),
        csv="results/scores.csv",
        json="results/scores.json",
        png=report(
            "results/scores.png",
            caption="../report/scores_chart.rst",
            category="Scores",
        ),
    log:
        "logs/table/table.log",
    localrule: True
    conda:
        "../envs/cpu.yaml"
    container:
        container_for("cpu")
    params:
        options=plan.table_options(),
        code=code_version("table"),
    shell:
        "evolcoder table --out-dir results {params.options} {input} > {log} 2>&1"
