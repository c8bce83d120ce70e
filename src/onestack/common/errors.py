"""Errors raised by managers and API code; each service renders them in its own fault body."""

from __future__ import annotations

from typing import Any

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class APIError(Exception):
    """An error with an HTTP status and a user-facing message.

    ``kind`` names the error for services whose fault bodies carry a type (Neutron's
    ``NetworkNotFound``); ``headers`` are added to the response.
    """

    status = 500

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        detail: Any = None,
    ) -> None:
        if status is not None:
            self.status = status
        self.message = message or TITLES.get(self.status, "Error")
        self.kind = kind or type(self).__name__
        self.headers = headers or {}
        self.detail = detail
        super().__init__(self.message)

    @property
    def title(self) -> str:
        return TITLES.get(self.status, "Error")


class BadRequest(APIError):
    status = 400


class ValidationError(BadRequest):
    """Request body or query failed validation."""


class Unauthorized(APIError):
    status = 401


class Forbidden(APIError):
    status = 403


class NotFound(APIError):
    status = 404


class MethodNotAllowed(APIError):
    status = 405


class NotAcceptable(APIError):
    status = 406


class Conflict(APIError):
    status = 409


class PreconditionFailed(APIError):
    status = 412


class PayloadTooLarge(APIError):
    status = 413


class UnsupportedMediaType(APIError):
    status = 415


class RangeNotSatisfiable(APIError):
    status = 416


class NotImplementedYet(APIError):
    status = 501


class ServiceUnavailable(APIError):
    status = 503
