"""/docs (Swagger UI) and /redoc, with their scripts and styles served by the gateway.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, and are blank in a hospital
network without internet. The assets here come from the installed ``fastapi-offline``
package (Swagger UI's bundle and CSS, ReDoc's standalone script, a favicon), mounted under
:data:`ASSETS_PATH`; the pages name no outside URL. The app is made with
``docs_url=None, redoc_url=None`` and :func:`install_docs` adds these instead.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs/assets"
DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"


def assets_directory() -> Path:
    """The folder of the installed Swagger UI and ReDoc files."""
    return Path(str(files("fastapi_offline") / "static"))


def _root(request: Request) -> str:
    """The app's root path as the browser sees it (behind a proxy too)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _title(app: FastAPI, page: str) -> str:
    return f"{app.title} - {page}"


def install_docs(app: FastAPI) -> None:
    """Add /docs, its OAuth2 redirect, /redoc and the assets they load to ``app``."""
    app.mount(ASSETS_PATH, StaticFiles(directory=assets_directory()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=_title(app, "Swagger UI"),
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_PATH,
            # Swagger UI's default sends the spec to an online validator for a badge.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=root + openapi_url, title=_title(app, "ReDoc"),
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png", with_google_fonts=False,
        )
