"""``gastrorad serve``: the command, and the operator's token tools (create, list, revoke).

The server itself is :func:`gastrorad.serve.create_app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from gastrorad.errors import InputError, Problem


def serve(bundles: Optional[list[Path]] = typer.Argument(None, help="Model bundle folder(s) to serve side by side."),
          host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default)."),
          port: int = typer.Option(8000, help="Port."),
          state: Optional[Path] = typer.Option(None, help="State folder: database, job folders "
                                               "(default ~/.gastrorad/serve or $GASTRORAD_SERVE_STATE). One server "
                                               "per state folder."),
          database: Optional[str] = typer.Option(None, help="SQLAlchemy database URL (default: SQLite in the state "
                                                 "folder; e.g. postgresql+psycopg://user@host/gastrorad)."),
          create_token: Optional[str] = typer.Option(None, "--create-token", metavar="NAME",
                                                     help="Create an API token for NAME, print it once, and exit."),
          list_tokens: bool = typer.Option(False, "--list-tokens",
                                           help="List the tokens' names, creation and last use, and exit."),
          revoke_token: Optional[str] = typer.Option(None, "--revoke-token", metavar="NAME",
                                                     help="Revoke NAME's token (its requests get 401 from now on), "
                                                          "and exit."),
          workers: int = typer.Option(2, help="Image jobs running at once."),
          max_upload_mb: float = typer.Option(512.0, help="Largest upload (image or batch job request body, MB)."),
          max_json_kb: float = typer.Option(64.0, help="Largest body of any other request (KB)."),
          retain_uploads: bool = typer.Option(False, help="Keep uploaded images after their job ends."),
          retention_days: Optional[float] = typer.Option(None, help="Delete job results (rows keep no result and no "
                                                         "study ID; folders go) this many days after the job ended "
                                                         "(default: keep)."),
          ) -> None:
    """Serve locked model bundles: web page and REST API (OpenAPI at /api/v1/openapi.json).

    Python: gastrorad.serve.create_app.
    """
    from gastrorad.cli import _output, console, err
    from gastrorad.serve.settings import ServeSettings, default_state_dir
    if retention_days is not None and retention_days <= 0:
        raise InputError(Problem("--retention-days", "must be a positive number of days"))
    settings = ServeSettings(state_dir=(state or default_state_dir()).resolve(), database_url=database,
                             workers=workers, max_upload_mb=max_upload_mb, max_json_kb=max_json_kb,
                             retain_uploads=retain_uploads, retention_days=retention_days)
    _output[:] = [settings.state_dir]
    if create_token is not None or list_tokens or revoke_token is not None:
        return _tokens(settings, create_token, list_tokens, revoke_token, console)
    if not bundles:
        raise InputError(Problem("BUNDLE", "give at least one bundle folder to serve (or --create-token NAME)"))
    try:
        import uvicorn

        from gastrorad.serve import create_app
        from gastrorad.serve.security import access_log_config
    except ImportError as exc:
        raise InputError(Problem("gastrorad serve", f"the serve extra is not installed ({exc.name} missing): "
                                 "pip install 'gastrorad[serve]'")) from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/yellow] listening on {host}, not loopback: put the server behind TLS "
                  "(a reverse proxy) so tokens and images do not cross the network in clear", highlight=False)
    web = create_app(bundles, settings)
    for m in web.state.models.values():
        console.print(f"serving {m.id} ({m.folder})", highlight=False, soft_wrap=True)
    console.print(f"page: http://{host}:{port}/   API: http://{host}:{port}/api/v1 (state in {settings.state_dir})",
                  highlight=False, soft_wrap=True)
    uvicorn.run(web, host=host, port=port, log_level="info", server_header=False, log_config=access_log_config())


def _tokens(settings, create: str | None, list_: bool, revoke: str | None, console) -> None:
    """The token tools: only a token's SHA-256 is stored, so a lost token is revoked and made anew."""
    from gastrorad.serve.store import Store
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.db_url)
    if revoke is not None:
        if not store.revoke_token(revoke):
            names = ", ".join(t["name"] for t in store.tokens()) or "none"
            raise InputError(Problem("--revoke-token", f"no token named '{revoke}' (tokens: {names})"))
        console.print(f"revoked the token of '{revoke}': its requests are refused from now on", highlight=False)
    if create is not None:
        try:
            token = store.create_token(create)
        except ValueError as exc:
            raise InputError(Problem("--create-token", str(exc))) from None
        console.print(f"API token for '{create}' (shown once; only its hash is stored):")
        console.print(token, highlight=False, soft_wrap=True)
    if list_:
        table = Table(title=f"API tokens in {settings.db_url}")
        for col in ("name", "created (UTC)", "last used (UTC)"):
            table.add_column(col)
        for t in store.tokens():
            table.add_row(t["name"], f"{t['created']:%Y-%m-%d %H:%M}",
                          f"{t['last_used']:%Y-%m-%d %H:%M}" if t["last_used"] else "never")
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command(name="serve")(serve)
