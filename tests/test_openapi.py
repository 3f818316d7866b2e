"""Real answers, every documented status of every operation, checked against /openapi.json."""

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from app import create_app


@pytest.fixture
def api(app, database):
    """The app's own description, loaded by schemathesis; requests share the test's transaction."""
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def answer(api, method: str, path: str, status: int, **case):
    """Call the operation as `case` says, check the answer is `status`, then validate it."""
    made = api[path][method].Case(**case)
    response = made.call()
    assert response.status_code == status, response.text
    # A documented 503 is what the description promises; schemathesis flags any 5xx by default.
    excluded = [not_a_server_error] if status == 503 else []
    try:
        made.validate_response(response, excluded_checks=excluded)
    except FailureGroup as failures:
        pytest.fail(f"{method} {path} -> {status} breaks the description: {failures}")
    return response


def test_the_service_endpoints_answer_as_described(api):
    answer(api, "GET", "/", 200)
    answer(api, "GET", "/health", 200)


def test_every_status_of_the_users_operations_is_as_described(api):
    created = answer(api, "POST", "/users", 201, body={"email": "ada@example.com"}).json()
    answer(api, "POST", "/users", 409, body={"email": "ADA@example.com"})
    answer(api, "POST", "/users", 400, body={"email": 42})
    answer(api, "POST", "/users", 413, body={"email": "a" * 20_000 + "@example.com"})
    answer(
        api,
        "POST",
        "/users",
        415,
        body="email=ada@example.com",
        media_type="application/x-www-form-urlencoded",
    )
    user = {"user_id": created["id"]}
    answer(api, "GET", "/users/{user_id}", 200, path_parameters=user)
    answer(api, "GET", "/users", 200, query={"limit": 1})
    answer(api, "GET", "/users", 400, query={"limit": 0})
    answer(api, "DELETE", "/users/{user_id}", 204, path_parameters=user)
    answer(api, "GET", "/users/{user_id}", 404, path_parameters=user)
    answer(api, "DELETE", "/users/{user_id}", 404, path_parameters=user)


def test_the_database_being_down_is_a_described_503(app, monkeypatch):
    monkeypatch.setenv("POSTGRES_PORT", "1")  # nothing listens there
    down = schemathesis.openapi.from_wsgi("/openapi.json", create_app("testing"))
    answer(down, "GET", "/users", 503)
    answer(down, "POST", "/users", 503, body={"email": "ada@example.com"})
    answer(down, "GET", "/users/{user_id}", 503, path_parameters={"user_id": 1})
    answer(down, "DELETE", "/users/{user_id}", 503, path_parameters={"user_id": 1})
    answer(down, "GET", "/health", 503)
