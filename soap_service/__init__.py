"""Message Center: transactional messaging, wire-compatible with the suite's PushEvent API."""

__version__ = "0.1.0"
