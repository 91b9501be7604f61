# Merged dataset -> tokenised cache -> fine-tuned checkpoint.


rule tokenize:
    input:
        # the main merged set, or seed + rounds 1..k for the rounds ablation's checkpoint of k
        data=get_train_data,
    output:
        "results/tokenized/{model}.pt",
    log:
        "logs/tokenize/{model}.log",
    conda:
        "../envs/gpu.yaml"
    container:
        container_for("gpu")
    params:
        # only what changes the tokens: a learning-rate change does not re-tokenise
        settings=settings("tokenize"),
        code=code_version("tokenize"),
    shell:
        "evolcoder tokenize --data {input.data} --out {output}"
        " --settings-json {params.settings} > {log} 2>&1"


rule train:
    input:
        data=get_train_data,
        tokenized="results/tokenized/{model}.pt",
    output:
        model=directory("results/train/{model}/model"),
        history="results/train/{model}/log_history.json",
    log:
        "logs/train/{model}.log",
    benchmark:
        "logs/benchmarks/train/{model}.tsv"
    conda:
        "../envs/gpu.yaml"
    container:
        container_for("gpu")
    threads: 2
    resources:
        **plan.train_job_resources(),
    params:
        settings=settings("train"),
        out_dir=subpath(output.history, parent=True),
        code=code_version("train"),
    shell:
        # one process per allocated GPU: `evolcoder train` re-executes itself under torchrun when several
        # (on several nodes: srun, one torchrun per node, a c10d rendezvous at the first)
        "evolcoder train --data {input.data} --tokenized {input.tokenized}"
        " --out-dir {params.out_dir} --settings-json {params.settings} > {log} 2>&1"


rule training_plot:
    input:
        "results/train/{model}/log_history.json",
    output:
        report(
            "results/train/{model}/loss.png",
            caption="../report/loss_curve.rst",
            category="Training",
            labels={"model": "{model}"},
        ),
    log:
        "logs/train/{model}.plot.log",
    localrule: True
    conda:
        "../envs/cpu.yaml"
    container:
        container_for("cpu")
    params:
        code=code_version("plot-training"),
    shell:
        "evolcoder plot-training --history {input} --out {output} > {log} 2>&1"
