"""The FastAPI application: API routes, review pages, and at start-up the migrations, the worker supervisor and
the callback dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .settings import ServiceSettings
from .store import make_engine, migrate
from .uploads import UploadError

log = logging.getLogger("deepscreen.service")


def create_app(settings: ServiceSettings, workers: bool = True) -> FastAPI:
    """workers=False: API only (no scanning), for generating the OpenAPI spec."""
    from .. import __version__
    from . import api, review

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Partial uploads of a server that died mid-request: never referenced by a job, so safe to drop.
        for partial in (settings.data_dir / "tmp").glob("*"):
            partial.unlink(missing_ok=True)
        engine = app.state.engine
        await asyncio.to_thread(migrate, engine)
        stop = asyncio.Event()
        tasks = []
        if workers:
            from .callbacks import run_dispatcher
            from .supervisor import Supervisor

            app.state.supervisor = Supervisor(settings, engine)
            await asyncio.to_thread(app.state.supervisor.start)
            tasks.append(asyncio.create_task(run_dispatcher(engine, settings, _payload(engine), stop)))
        try:
            yield
        finally:
            stop.set()
            for t in tasks:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(t, 15)
            if app.state.supervisor is not None:
                await asyncio.to_thread(app.state.supervisor.stop)
            engine.dispose()

    app = FastAPI(title="deepscreen prescreening service", version=__version__, lifespan=lifespan,
                  description="Scores incoming media with deepscreen, routes each verdict (pass, review, "
                              "quarantine, reject) and keeps a review queue. See docs/service.md.")
    app.state.settings = settings
    app.state.engine = make_engine(settings.url)
    app.state.supervisor = None
    app.include_router(api.router)
    app.include_router(review.router)

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError):
        headers = {}
        if exc.status == 413:
            # The rest of the body is never read; closing the connection stops the client from sending it.
            headers["Connection"] = "close"
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # say which methods the path does take (RFC 9110 requires Allow on 405)
            methods = set()
            for route in app.router.routes:
                match, _ = route.matches(request.scope)
                if match != Match.NONE:
                    methods |= set(getattr(route, "methods", None) or ())
            headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    return app


def _payload(engine):
    def payload_of(scan_id: str) -> dict:
        from .api import load_scan
        from .views import full

        row = load_scan(engine, scan_id)
        out = full(row)
        return {k: out[k] for k in ("id", "status", "route", "reason", "verdict")}
    return payload_of


def openapi_spec() -> dict:
    """The spec as served at /openapi.json (committed as docs/openapi.json; a test checks they agree)."""
    app = create_app(ServiceSettings(), workers=False)
    return app.openapi()
