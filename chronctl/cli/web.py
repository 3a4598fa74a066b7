"""`chronctl web`: serve the dashboard (chronctl/web/app.py) with uvicorn.

The web extra (starlette, uvicorn, jinja2, python-multipart) is imported only
here, inside the command: the core install runs every other command without it,
and `chronctl web` without it says how to get it (exit 2).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from . import Options

MISSING_EXTRA = "chronctl web needs the web extra: pip install 'chronctl[web]'"


def register(app: typer.Typer) -> None:
    app.command()(web)


def web(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to bind (127.0.0.1: this host only)."),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")
    ] = 8080,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            help="Read the actions token from FILE (default: a new one, printed at start).",
        ),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Serve pages only: no actions, no login.")
    ] = False,
    root_path: Annotated[
        str,
        typer.Option(
            "--root-path",
            metavar="PATH",
            help="The prefix a reverse proxy serves the dashboard under, e.g. /chronctl.",
        ),
    ] = "",
) -> None:
    """A web dashboard: overview, jobs, queues, tasks, dead letters, history (needs the
    web extra)."""
    try:
        import jinja2  # noqa: F401
        import python_multipart  # noqa: F401  (Starlette parses forms with it)
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise UsageError(MISSING_EXTRA) from None
    from ..admin import open_backend
    from ..web.app import LOOPBACK_NAMES, WebConfig, create_app

    opts: Options = ctx.obj
    if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
        raise UsageError("--root-path must start with / and not end with one, e.g. /chronctl")
    token = _token(token_file) if not read_only else ""
    manifest = None
    if opts.manifest.exists() or not opts.backend:
        manifest = opts.load_manifest()
    backend = open_backend(opts.manifest, opts.backend, "web", manifest)
    # On loopback, only loopback names (DNS rebinding); bound wider, a proxy or the
    # network decides which names reach it.
    allowed = LOOPBACK_NAMES if host in LOOPBACK_NAMES else None
    config = WebConfig(token, read_only, root_path, allowed)
    app = create_app(backend, manifest, config)
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    typer.echo(f"chronctl web: {where} ({backend.label})", err=True)
    # Behind a proxy the browser reaches the pages (and the cookie's path) under the prefix.
    login, via = (
        (f"{root_path}/login", " (through the proxy)") if root_path else (where + "login", "")
    )
    if read_only:
        typer.echo("read-only: no actions are served", err=True)
    elif token_file is None:
        typer.echo(f"actions: log in at {login}?token={token}{via}", err=True)
    else:
        typer.echo(f"actions: log in at {login}{via} with the token in {token_file}", err=True)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            root_path=root_path,
            log_level="warning",
            # The login link carries the token in its query: never written to a log.
            access_log=False,
            proxy_headers=False,
            lifespan="on",
        )
    )
    server.run()


def _token(path: Path | None) -> str:
    if path is None:
        return secrets.token_urlsafe(24)
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read --token-file {path}: {exc.strerror}") from None
    if len(token) < 16:
        raise UsageError(f"the token in {path} is too short: 16 characters at least")
    return token
