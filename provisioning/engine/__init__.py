"""The lifecycle engine: plans as data, the job state table, the phase runner, rollback,
resume, the sweeper, lease renewal and the steps. Nothing here serves HTTP or WebSockets."""
