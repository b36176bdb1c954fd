"""What shows a job as it changes: status hints published on commit, the per-process hub, the
status snapshots, the WebSocket consumers, the server-sent-event stream and their routes."""
