"""Background jobs: dispatch, exports, retention."""
