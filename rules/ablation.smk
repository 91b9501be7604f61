# Rounds ablation: seed + rounds 1..k -> one checkpoint per k (the k = N one is the main model) -> scores
# -> results/ablation/rounds.{md,csv,png}; with evolution.rounds: auto, a checkpoint after each round
# decides whether to evolve another one (the paper's selection).


checkpoint select_round:
    input:
        unpack(get_selection_inputs),
    output:
        "results/selection/round_{k}.json",
    log:
        "logs/selection/round_{k}.log",
    localrule: True
    conda:
        "../envs/cpu.yaml"
    container:
        container_for("cpu")
    params:
        max_rounds=plan.n_rounds(),
        benchmark=plan.selection()["benchmark"],
        split=plan.selection()["split"],
        code=code_version("select-round"),
    shell:
        "evolcoder select-round --k {wildcards.k} --max-rounds {params.max_rounds} --benchmark {params.benchmark}"
        " --split {params.split} --previous {input.previous} --current {input.current} --out {output} > {log} 2>&1"


rule ablation_table:
    input:
        scores=get_ablation_scores,
        stats=get_ablation_stats,
        decisions=get_selection_decisions,
    output:
        md=report(
            "results/ablation/rounds.md",
            caption="../report/ablation_rounds.rst",
            category="Ablation",
        ),
        csv="results/ablation/rounds.csv",
        png=report(
            "results/ablation/rounds.png",
            caption="../report/ablation_rounds_chart.rst",
            category="Ablation",
        ),
    log:
        "logs/ablation/rounds.log",
    localrule: True
    conda:
        "../envs/cpu.yaml"
    container:
        container_for("cpu")
    params:
        args=ablation_args,
        held_fixed=shlex.quote(plan.held_fixed()),
        selection=shlex.quote(plan.selection_note()),
        decisions=lambda w, input: " ".join(f"--decision {d}" for d in input.decisions),
        out_dir=subpath(output.md, parent=True),
        code=code_version("ablation-table"),
    shell:
        "evolcoder ablation-table --out-dir {params.out_dir} {params.args} --held-fixed {params.held_fixed}"
        " --selection {params.selection} {params.decisions} {input.scores} > {log} 2>&1"


rule ablation_rounds:
    input:
        rules.ablation_table.output,
    localrule: True
