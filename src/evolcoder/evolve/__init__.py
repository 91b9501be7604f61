"""Code Evol-Instruct: `evolcoder evolve` and `evolcoder estimate` (:mod:`evolcoder.evolve.commands`), a round
(:mod:`evolcoder.evolve.engine`), `evolcoder plot-evolution` (:mod:`evolcoder.evolve.stats`).

Importing this package imports nothing else, so a command of one module does not carry the others'
code into its code hash (:mod:`evolcoder.codehash`).
"""
