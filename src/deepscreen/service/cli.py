"""`deepscreen serve` and `deepscreen keys create|list|revoke` (registered in deepscreen.cli)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

keys_app = typer.Typer(no_args_is_help=True, help="API keys of the service: create (shown once), list, revoke.")

_DATA_DIR = typer.Option(None, "--data-dir", help="Data directory (default ./deepscreen-data).")
_DB_URL = typer.Option(None, "--database-url", help="postgresql://... instead of the embedded SQLite store.")
_CONFIG = typer.Option(None, "--config", help="TOML settings file (see docs/service.md).")


def _settings(flags: dict, config: Path | None):
    from .settings import load_settings

    try:
        return load_settings(flags, config)
    except (ValueError, OSError) as err:
        print(f"deepscreen: error: {err}", file=sys.stderr)
        raise typer.Exit(2) from None


def _engine(data_dir, database_url, config):
    from .store import make_engine, migrate

    s = _settings({"data_dir": data_dir, "database_url": database_url}, config)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(s.url)
    migrate(engine)
    return engine


def serve(
    host: Optional[str] = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (default 8080)."),
    data_dir: Optional[Path] = _DATA_DIR,
    database_url: Optional[str] = _DB_URL,
    workers: Optional[int] = typer.Option(None, help="Scan worker processes (default: one per core, at most 4)."),
    media_root: Optional[Path] = typer.Option(None, help="Allow {\"path\": ...} submissions of files under it."),
    max_upload_bytes: Optional[int] = typer.Option(None, help="Largest upload accepted (default 100 MiB)."),
    callback_host: list[str] = typer.Option([], "--callback-host", help="Allow callbacks to this host[:port] "
                                            "(repeatable)."),
    config: Optional[Path] = _CONFIG,
):
    """Start the prescreening service: HTTP API, scan workers, review page at /review."""
    import logging

    import uvicorn

    from .app import create_app

    flags = dict(host=host, port=port, data_dir=data_dir, database_url=database_url, workers=workers,
                 media_root=media_root, max_upload_bytes=max_upload_bytes, callback_hosts=callback_host or None)
    settings = _settings(flags, config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                timeout_graceful_shutdown=10)


@keys_app.command("create")
def keys_create(
    role: str = typer.Option(..., help="submit, review or admin."),
    name: str = typer.Option("", help="Who or what the key is for (shown in the audit log)."),
    data_dir: Optional[Path] = _DATA_DIR, database_url: Optional[str] = _DB_URL, config: Optional[Path] = _CONFIG,
):
    """Create a key and print it once (only its hash is stored)."""
    from .keys import ROLES, create_key

    if role not in ROLES:
        print(f"deepscreen: error: --role {role!r}: use one of {', '.join(ROLES)}", file=sys.stderr)
        raise typer.Exit(2)
    key_id, key = create_key(_engine(data_dir, database_url, config), role, name)
    print(key)
    print(f"key {key_id} ({role}) created; it is shown only now, keep it safe", file=sys.stderr)


@keys_app.command("list")
def keys_list(data_dir: Optional[Path] = _DATA_DIR, database_url: Optional[str] = _DB_URL,
              config: Optional[Path] = _CONFIG):
    """List keys (ids, names, roles; never the keys)."""
    from .keys import list_keys

    def when(t):
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M") if t else ""
    for k in list_keys(_engine(data_dir, database_url, config)):
        state = f"revoked {when(k['revoked_at'])}" if k["revoked_at"] else "active"
        print(f"{k['id']}  {k['role']:<7} {when(k['created_at'])}  {state:<24} {k['name']}")


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id, as `keys list` shows it."),
                data_dir: Optional[Path] = _DATA_DIR, database_url: Optional[str] = _DB_URL,
                config: Optional[Path] = _CONFIG):
    """Revoke a key: it stops working at once, sessions opened with it included."""
    from .keys import revoke_key

    if not revoke_key(_engine(data_dir, database_url, config), key_id):
        print(f"deepscreen: error: no active key {key_id!r}", file=sys.stderr)
        raise typer.Exit(1)
    print(f"key {key_id} revoked")
