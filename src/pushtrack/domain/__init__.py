"""Pure rules and types of pushtrack: no I/O lives here."""
