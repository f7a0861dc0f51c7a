"""Background jobs: dispatch, expansion, exports, statistics, retention, webhooks."""
