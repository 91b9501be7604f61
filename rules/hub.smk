# Hub-ready artefacts: the merged data set as parquet shards + dataset card, and the evaluation results in the
# trained model's card (model-index). Pushing to the hub is a command (`evolcoder push`), never a rule.


rule export_dataset:
    input:
        unpack(get_dataset_inputs),
    output:
        card="results/dataset/README.md",
        data=directory("results/dataset/data"),
    log:
        "logs/dataset/export.log",
    localrule: True
    conda:
        "../envs/cpu.yaml"
    container:
        container_for("cpu")
    params:
        rounds=lambda w, input: " ".join(f"--round-stats {p}" for p in input.rounds),
        settings=settings("export-data"),
        out_dir=subpath(output.card, parent=True),
        code=code_version("export-data"),
    shell:
        "evolcoder export-data --merged {input.merged} --seed {input.seed} --merge-stats {input.stats}"
        " --decontamination {input.decontamination} {params.rounds} --settings-json {params.settings}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule model_card:
    input:
        model="results/train/{model}/model",
        scores="results/scores.json",
    output:
        "results/train/{model}/model_card.json",
    log:
        "logs/model_card/{model}.log",
    localrule: True
    conda:
        "../envs/cpu.yaml"
    container:
        container_for("cpu")
    params:
        name=table_name,
        settings=settings("model-card"),
        code=code_version("model-card"),
    shell:
        "evolcoder model-card --model-dir {input.model} --scores {input.scores} --model-name {params.name:q}"
        " --settings-json {params.settings} --out {output} > {log} 2>&1"
