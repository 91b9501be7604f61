"""Fine-tuning: `evolcoder tokenize` (:mod:`evolcoder.train.tokens`), `evolcoder train`
(:mod:`evolcoder.train.commands`, :mod:`evolcoder.train.run`), `evolcoder plot-training`
(:mod:`evolcoder.train.plot`).

Importing this package imports nothing else, so a command of one module does not carry the others'
code into its code hash (:mod:`evolcoder.codehash`).
"""
