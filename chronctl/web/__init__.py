"""`chronctl web`: a dashboard served from the library (needs the `web` extra).

`app.py` builds the Starlette app from a backend and a manifest; every action it
offers calls the same chronctl/admin.py and chronctl/schedule_admin.py functions
the CLI commands call. Nothing here is imported by the core install: the CLI
imports this package only inside `chronctl web`, after checking the extra is there.
"""
