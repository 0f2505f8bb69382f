"""The ASGI application: DICOMweb under ``/dicomweb/{AETITLE}``, the page under ``/``."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount

from pyqrscp.web import frames, metadata, page, qido, rendered, stow, wado
from pyqrscp.web.access import RequireCredentials, TrustedHosts
from pyqrscp.web.archive import WebArchive

LOGGER = logging.getLogger(__name__)


async def _http_error(request: Request, error: Exception) -> Response:
    status = error.status_code if isinstance(error, HTTPException) else 500
    detail = error.detail if isinstance(error, HTTPException) else "internal error"
    return PlainTextResponse(f"{detail}\n", status_code=status,
                             headers=getattr(error, "headers", None))


def build_app(archive: WebArchive) -> Starlette:
    """The application over ``archive``; CORS only for the configured origins, and without
    credentials for ``*`` (any page could then use a browser's stored password)."""
    dicomweb: list[BaseRoute] = [*qido.ROUTES, *stow.ROUTES, *rendered.ROUTES, *metadata.ROUTES,
                                 *frames.ROUTES, *wado.ROUTES]
    origins = archive.settings.allow_origins
    middleware = [Middleware(TrustedHosts, settings=archive.settings)]
    if origins:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(origins),
            allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"],
            allow_credentials="*" not in origins,
            expose_headers=["Content-Type", "Content-Length"]))
    middleware.append(Middleware(RequireCredentials, settings=archive.settings))
    app = Starlette(routes=[Mount("/dicomweb/{aet}", routes=dicomweb), *page.ROUTES],
                    middleware=middleware, exception_handlers={HTTPException: _http_error})
    app.state.archive = archive
    return app
