"""The web console (SPEC §9): ``create_console`` in ``app.py``; see ``docs/console.md``."""
