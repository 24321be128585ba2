"""Static file routers (core's and each plugin's) that answer 404 to a path no file can have.

Litestar's static handler passes the path to the file system as it is: a NUL byte makes
`os.stat` raise ValueError, and an over-long name (ENAMETOOLONG) becomes Litestar's
InternalServerException: both were 500s. Such a path names no file we serve, so the answer is the
ordinary "not found" page.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Request, Response
from litestar.exceptions import InternalServerException
from litestar.router import Router
from litestar.static_files import create_static_files_router

from core.error_pages import render_error


def _not_found(request: Request, _: Exception) -> Response:
    return render_error(request, 404)


def static_files_router(path: str, directory: Path, name: str) -> Router:
    return create_static_files_router(
        path=path,
        directories=[directory],
        name=name,
        exception_handlers={ValueError: _not_found, InternalServerException: _not_found},
    )
