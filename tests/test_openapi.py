"""Real answers, every documented status of every operation, checked against /openapi.json.

An answer passes when the description lists its status for the operation, its media type for
that status, and a schema its body is valid against. `inv fuzz` sends generated requests.
"""

import copy
import functools
import json

import pytest
from jsonschema import Draft4Validator

from app import create_app


@pytest.fixture(scope="session")
def description(app) -> dict:
    """/openapi.json as the app serves it; OpenAPI 3.0's `nullable` made JSON Schema's null."""

    def nullable(schema: dict) -> dict:
        return {**schema, "type": [schema["type"], "null"]} if schema.get("nullable") else schema

    return json.loads(app.test_client().get("/openapi.json").data, object_hook=nullable)


@pytest.fixture
def api(client, description):
    """Calls to the app whose answers are checked against its description (`answer`)."""
    return functools.partial(answer, client, description)


def answer(
    client, description, method: str, path: str, status: int, path_parameters=None, **request
):
    """Call the operation, check the answer is `status` and is as the description says."""
    response = client.open(path.format(**path_parameters or {}), method=method, **request)
    assert response.status_code == status, response.text
    described = description["paths"][path][method.lower()]["responses"].get(str(status))
    assert described, f"{method} {path} -> {status}: a status the description does not list"
    if not described.get("content"):
        assert not response.data, f"{method} {path} -> {status}: a body the description has not"
        return response
    content = described["content"].get(response.mimetype)
    assert content, f"{method} {path} -> {status}: {response.mimetype} is not described"
    body = response.json if response.is_json else response.text
    schema = {**content["schema"], "components": description["components"]}  # for its $refs
    broken = [error.message for error in Draft4Validator(schema).iter_errors(body)]
    assert not broken, f"{method} {path} -> {status} breaks the description: {broken}"
    return response


def test_the_service_endpoints_answer_as_described(api):
    api("GET", "/", 200)
    api("GET", "/health", 200)


def test_every_status_of_the_users_operations_is_as_described(api):
    created = api("POST", "/users", 201, json={"email": "ada@example.com"}).json
    api("POST", "/users", 409, json={"email": "ADA@example.com"})
    api("POST", "/users", 400, json={"email": 42})
    api("POST", "/users", 413, json={"email": "a" * 20_000 + "@example.com"})
    form = "application/x-www-form-urlencoded"
    api("POST", "/users", 415, data="email=ada@example.com", content_type=form)
    user = {"user_id": created["id"]}
    api("GET", "/users/{user_id}", 200, path_parameters=user)
    api("GET", "/users", 200, query_string={"limit": 1})
    api("GET", "/users", 400, query_string={"limit": 0})
    api("DELETE", "/users/{user_id}", 204, path_parameters=user)
    api("GET", "/users/{user_id}", 404, path_parameters=user)
    api("DELETE", "/users/{user_id}", 404, path_parameters=user)


def test_the_database_being_down_is_a_described_503(app, description, monkeypatch):
    monkeypatch.setenv("POSTGRES_PORT", "1")  # nothing listens there
    down = functools.partial(answer, create_app("testing").test_client(), description)
    user = {"user_id": 1}
    down("GET", "/users", 503)
    down("POST", "/users", 503, json={"email": "ada@example.com"})
    down("GET", "/users/{user_id}", 503, path_parameters=user)
    down("DELETE", "/users/{user_id}", 503, path_parameters=user)
    down("GET", "/health", 503)


def test_an_answer_off_the_description_fails_the_check(client, description):
    """The check itself: a body off its schema, or a status not listed, is caught."""
    broken = copy.deepcopy(description)
    broken["components"]["schemas"]["Health"]["required"].append("uptime")
    with pytest.raises(AssertionError, match="breaks the description"):
        answer(client, broken, "GET", "/health", 200)
    del broken["paths"]["/health"]["get"]["responses"]["200"]
    with pytest.raises(AssertionError, match="a status the description does not list"):
        answer(client, broken, "GET", "/health", 200)
