"""The sandbox that runs generated code: one freshly forked, isolated, limited child per job.

- :mod:`~evolcoder.sandbox.jobs`: a job (function, arguments, limits) and its result (plain data);
- :mod:`~evolcoder.sandbox.child`: the child and its guard (CPU limits, the no-progress guard, cleanup);
- :mod:`~evolcoder.sandbox.isolation`: namespaces, private temp dirs, the hidden project tree, sandbox uids;
- :mod:`~evolcoder.sandbox.values`: what may come back (plain values only);
- :mod:`~evolcoder.sandbox.pool` / :mod:`~evolcoder.sandbox.worker`: fresh worker processes (any
  interpreter) that fork the children, and the pool that feeds them (:mod:`~evolcoder.sandbox.protocol`);
- :mod:`~evolcoder.sandbox.probe`: an interpreter's version and library versions, and the environment
  a worker or probe starts with.

Only the standard library is used (workers run under other environments' interpreters, DS-1000's pins),
and this package imports none of its modules itself: a stage's code hash (:mod:`evolcoder.codehash`)
covers the modules it really uses, so generation does not depend on the child or the pool.
"""
