"""The HTTP edge: envelope, auth, validation; one module per API group."""
