"""Every error the app answers with, as JSON `{"error": {"code", "message"}}`, from one place."""

import json
import logging

from apiflask import APIFlask, HTTPError
from flask import Response, jsonify, request
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    UnsupportedMediaType,
)
from werkzeug.http import HTTP_STATUS_CODES

log = logging.getLogger(__name__)

# In the environ of requests Werkzeug's debugger wraps (`flask run --debug`), never gunicorn's.
DEBUGGER_WRAPS = "werkzeug.debug.preserve_context"
BODY_METHODS = {"POST", "PUT", "PATCH"}


class APIFlaskWithDebugger(APIFlask):
    """APIFlask whose unhandled errors reach Werkzeug's debugger where it wraps the request."""

    def handle_exception(self, e: Exception) -> Response:
        if DEBUGGER_WRAPS in request.environ:
            raise e
        return super().handle_exception(e)


class ApiError(Exception):
    """An error the client can fix; its message says what is wrong."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Conflict(ApiError):
    status = 409
    code = "conflict"


def status_name(status: int) -> str:
    """The error code of an HTTP status: `not_found`, `method_not_allowed`."""
    return HTTP_STATUS_CODES.get(status, "error").lower().replace(" ", "_")


def error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify(error={"code": code, "message": message}), status


def register_error_handlers(app: APIFlask) -> None:
    @app.error_processor
    def envelope(error: HTTPError):
        """APIFlask's errors (404, 405, validation) in the envelope, naming an invalid field."""
        if error.status_code == app.config["VALIDATION_ERROR_STATUS_CODE"] and error.detail:
            message = "; ".join(
                f"{'body' if field == '_schema' else field}: "
                + (" ".join(problems) if isinstance(problems, list) else str(problems))
                for fields in error.detail.values()
                for field, problems in fields.items()
            )
            response, status = error_response(400, "invalid_field", message)
        else:
            code = status_name(error.status_code)
            response, status = error_response(error.status_code, code, error.message or "")
        response.headers.update(error.headers or {})
        return response, status

    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return error_response(error.status, error.code, error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = status_name(error.code or 500)
        description = error.description or ""
        # webargs (under APIFlask's input) refuses a body that is not JSON with messages of its own.
        unparsable = getattr(error, "data", {}).get("messages", {}).get("json")
        if isinstance(unparsable, list):
            description = f"malformed JSON: {' '.join(unparsable)}"
        response, status = error_response(error.code or 500, code, description)
        # 405 says which methods exist (Allow), 401 how to authenticate: keep such headers.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def database_unavailable(error: OperationalError | PoolTimeout):
        log.warning("database unavailable: %s", getattr(error, "orig", error))
        return error_response(503, "database_unavailable", "the database is unavailable; try again")

    @app.errorhandler(RecursionError)
    def too_deep(error: RecursionError):
        # A deeply nested JSON array fits in the size limit; json.loads gives up on it.
        return error_response(400, "bad_request", "malformed JSON: nested too deeply")

    @app.errorhandler(InternalServerError)
    def internal_error(error: InternalServerError):
        # Flask has logged the unhandled error's traceback; the client learns nothing of it.
        return error_response(500, "internal_error", "internal server error")


def json_bodies_only() -> None:
    """A POST, PUT or PATCH to a route: 415 when its body is not JSON, 400 when it won't parse."""
    routed = request.routing_exception is None  # else its 404 or 405 is the answer
    if routed and request.method in BODY_METHODS:
        if not request.is_json:
            raise UnsupportedMediaType("send a JSON object with Content-Type: application/json")
        # webargs parses it too, but answers 500 to an integer past Python's 4,300-digit limit.
        try:
            json.loads(request.get_data(cache=True) or b"null")
        except json.JSONDecodeError as error:
            raise BadRequest(f"malformed JSON: {error.msg} (line {error.lineno})") from None
        except ValueError:
            raise BadRequest("malformed JSON: a number with more than 4,300 digits") from None
