"""``bonemets bench``: how fast Triton and the gateway are, and what the gateway costs.

Modules: :mod:`~export.bench.cli` (the command), :mod:`~export.bench.session` and
:mod:`~export.bench.phases` (the run), :mod:`~export.bench.triton_direct` (Triton alone),
:mod:`~export.bench.gateway` (the gateway in a subprocess), :mod:`~export.bench.checkouts`
(this tree and a ``--baseline`` worktree, each run by its own code),
:mod:`~export.bench.concurrent` ((b4): studies at once), :mod:`~export.bench.sides`
(baseline beside current, their turns and ratios), :mod:`~export.bench.profile` (py-spy
samples by stage), :mod:`~export.bench.procfs`
(CPU and memory from /proc), :mod:`~export.bench.null_model` (the zero-cost model),
:mod:`~export.bench.studies` (the studies sent), :mod:`~export.bench.report` and
:mod:`~export.bench.markdown` (the table, JSON and docs page).
"""
