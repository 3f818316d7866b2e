"""/openapi.json stays true: every route is described, and real answers match the description."""

import re

import pytest

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def openapi_path(rule) -> str:
    """Flask's `/users/<int:user_id>` as OpenAPI's `/users/{user_id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)


@pytest.fixture
def spec(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json


def test_every_route_is_described_and_every_description_is_a_route(app, spec):
    routes = {
        (openapi_path(rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert routes == described


def problems(value, schema: dict, spec: dict, where: str = "body") -> list[str]:
    """Where `value` breaks `schema` (the subset of JSON Schema the description uses)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return problems(value, spec["components"]["schemas"][name], spec, where)
    if value is None:
        return [] if schema.get("nullable") else [f"{where} is null"]
    types = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}
    expected = types.get(schema.get("type"))
    if expected and not isinstance(value, expected):
        return [f"{where} is not {schema['type']}"]
    found = []
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}={value!r} not in {schema['enum']}")
    if isinstance(value, str) and len(value) > schema.get("maxLength", len(value)):
        found.append(f"{where} longer than {schema['maxLength']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        found += [
            f"{where}.{key} missing" for key in schema.get("required", []) if key not in value
        ]
        if schema.get("additionalProperties") is False:
            found += [f"{where}.{key} undescribed" for key in value if key not in properties]
        for key, item in value.items():
            if key in properties:
                found += problems(item, properties[key], spec, f"{where}.{key}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            found += problems(item, schema.get("items", {}), spec, f"{where}[{index}]")
    return found


def check_against_spec(spec: dict, path: str, method: str, response) -> None:
    operation = spec["paths"][path][method]
    described = operation["responses"].get(str(response.status_code))
    assert described, f"{method.upper()} {path} answered an undescribed {response.status_code}"
    content = described.get("content", {})
    if response.is_json:
        schema = content["application/json"]["schema"]
        assert problems(response.json, schema, spec) == []
    for header in described.get("headers", {}):
        assert header in response.headers


def test_real_answers_match_the_description(client, spec):
    created = client.post("/users", json={"email": "ada@example.com"})
    user = created.headers["Location"]
    calls = [
        ("/users", "post", created),
        ("/users", "post", client.post("/users", json={"email": "ADA@example.com"})),
        ("/users", "post", client.post("/users", json={"email": "nope"})),
        ("/users", "post", client.post("/users", data="{", content_type="application/json")),
        ("/users", "post", client.post("/users", data="x")),
        (
            "/users",
            "post",
            client.post("/users", data="x" * 20_000, content_type="application/json"),
        ),
        ("/users", "get", client.get("/users")),
        ("/users", "get", client.get("/users?limit=1")),
        ("/users", "get", client.get("/users?limit=zero")),
        ("/users/{user_id}", "get", client.get(user)),
        ("/users/{user_id}", "get", client.get("/users/999999")),
        ("/users/{user_id}", "delete", client.delete(user)),
        ("/users/{user_id}", "delete", client.delete(user)),
        ("/health", "get", client.get("/health")),
    ]
    for path, method, response in calls:
        check_against_spec(spec, path, method, response)
    statuses = sorted({response.status_code for _, _, response in calls})
    assert statuses == [200, 201, 204, 400, 404, 409, 413, 415]
