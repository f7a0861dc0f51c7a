"""pushtrack: a self-hosted push notification service with a per-device delivery audit trail."""

__version__ = "0.1.0"

__all__ = ["__version__"]
