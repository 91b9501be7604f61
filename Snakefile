# evolcoder: WizardCoder's Code Evol-Instruct, fine-tuning and evaluation as one DAG.
#   seed -> evolve_round (1..K) -> merge -> tokenize -> train -> generate (shards) -> gather -> score -> table
# Logic lives in the `evolcoder` package (src/evolcoder); every rule is a thin call of its CLI.

import re

from snakemake.utils import min_version

min_version("8.20")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    k=r"\d+",
    model=r"[A-Za-z0-9._-]+",
    benchmark="|".join(re.escape(b) for b in BENCHMARK_INFO),
    mode=r"greedy|sampled",
    shard=r"\d+",


include: "rules/evolve.smk"
include: "rules/train.smk"
include: "rules/eval.smk"
include: "rules/ablation.smk"
include: "rules/hub.smk"


rule all:
    default_target: True
    input:
        get_final_output,
    localrule: True
