"""The benchmark suite: ``python -m bench`` measures the per-call overhead of each
resilience primitive and middleware pipeline beside its peers (tenacity, stamina, pybreaker,
purgatory, aiobreaker, cachetools, the trio floor and, when Node is present, BlueLibs
Runner), and what durable workflows cost (beside DBOS Transact, in a venv of its own),
prints a table and writes ``bench/results/latest.json`` and ``latest.png``.

Modules: ``_timing`` (the harness and its statistics), ``_scenario`` (what a scenario is),
``scenarios`` (the registry, one module per group), ``anchors.runner`` (the Node anchor),
``anchors.dbos`` (the DBOS anchor), ``pg`` (the PostgreSQL rows' throwaway cluster),
``_execute`` (runs a selection), ``targets`` (goals as data), ``machine`` (machine and
versions), ``report`` (table and JSON), ``chart`` (the PNG), ``__main__`` (the CLI).
"""
