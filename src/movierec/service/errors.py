"""Every error leaves as JSON ``{"error", "message"[, "detail"]}`` with a 4xx status; a 503 with
Retry-After while the database cannot be reached (nothing was written; the client should retry); a
500 only for a bug (logged with its traceback, answered without one)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from movierec.errors import ConfigError, DataError, MovieRecError, UnknownIdError
from movierec.service.store import StoreUnavailable

__all__ = ["ApiError", "install"]

log = logging.getLogger(__name__)

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
          415: "unsupported_media_type", 422: "invalid_request", 500: "internal_error",
          503: "unavailable"}

#: Seconds a client is asked to wait before retrying while the database is unavailable.
RETRY_AFTER = 2


class ApiError(Exception):
    """Raised by routes for a deliberate 4xx."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")


def error_response(status: int, message: str, code: str | None = None,
                   detail: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    body: dict[str, Any] = {"error": code or _CODES.get(status, "error"), "message": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    detail = []
    for err in exc.errors():
        location = ".".join(str(part) for part in err.get("loc", ()))
        detail.append({"loc": location, "msg": str(err.get("msg", "invalid"))})
    first = detail[0] if detail else {"loc": "request", "msg": "invalid"}
    return f"{first['loc']}: {first['msg']}", detail


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.message, exc.code, headers=headers)

    @app.exception_handler(UnknownIdError)
    async def unknown_id(_: Request, exc: UnknownIdError) -> JSONResponse:
        return error_response(404, str(exc))

    @app.exception_handler(MovieRecError)
    async def movierec_error(_: Request, exc: MovieRecError) -> JSONResponse:
        status = 422 if isinstance(exc, ConfigError | DataError) else 400
        return error_response(status, str(exc))

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("answered 503: %s", exc)
        return error_response(503, "the database is unavailable; nothing was changed, retry shortly",
                              headers={"Retry-After": str(RETRY_AFTER)})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, detail = _validation_detail(exc)
        return error_response(422, message, detail=detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error; the server log has the details")
