"""The users API through the test client: every status it answers with."""

import pytest
from sqlalchemy import func, select

from app.models import User


def create(client, email: str):
    return client.post("/users", json={"email": email})


def error_code(response) -> str:
    return response.json["error"]["code"]


def test_create_a_user(client):
    response = create(client, "  Ada.Lovelace@Example.COM ")
    assert response.status_code == 201
    assert response.json["email"] == "Ada.Lovelace@example.com"
    assert response.headers["Location"] == f"/users/{response.json['id']}"


def test_the_location_of_a_new_user_answers(client):
    location = create(client, "ada@example.com").headers["Location"]
    response = client.get(location)
    assert response.status_code == 200
    assert response.json["email"] == "ada@example.com"


def test_a_duplicate_email_is_a_conflict_whatever_its_case(client, database):
    assert create(client, "ada@example.com").status_code == 201
    response = create(client, "ADA@EXAMPLE.com")
    assert response.status_code == 409
    assert error_code(response) == "conflict"
    assert database.session.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({}, "email: Missing data for required field."),
        ({"email": 42}, "email: Not a valid string."),
        ({"email": "no-at-sign"}, "email: An email address must have an @-sign"),
        ({"email": "@example.com"}, "email: There must be something before the @-sign"),
        ({"email": "ada@"}, "email: There must be something after the @-sign"),
        (
            {"email": "a b@example.com"},
            "email: The email address contains invalid characters before the @-sign",
        ),
        (
            {"email": "ada..l@example.com"},
            "email: An email address cannot have two periods in a row",
        ),
        (
            {"email": "ada@localhost"},
            "email: The part after the @-sign is not valid. It should have a period",
        ),
        (
            {"email": "ada@-example.com"},
            "email: An email address cannot have a hyphen immediately after the @-sign",
        ),
        (
            {"email": "ada@example.123"},
            "email: The part after the @-sign is not valid. It is not within a valid top-level domain",
        ),
        (
            {"email": "a" * 65 + "@example.com"},
            "email: The email address is too long before the @-sign",
        ),
        ({"email": "a@" + "b" * 250 + ".com"}, "email: The email address is too long"),
    ],
)
def test_an_invalid_email_is_a_400_naming_the_field(client, body, problem):
    response = client.post("/users", json=body)
    assert response.status_code == 400
    assert error_code(response) == "invalid_field"
    assert response.json["error"]["message"].startswith(problem)


def test_an_international_domain_is_accepted_and_lower_cased(client):
    response = create(client, "ada@BÜCHER.example")
    assert response.status_code == 201
    assert response.json["email"] == "ada@bücher.example"


def test_a_mailbox_in_unicode_and_in_punycode_is_one_user(client, database):
    assert create(client, "ada@bücher.example").status_code == 201
    response = create(client, "ada@xn--bcher-kva.example")
    assert response.status_code == 409
    assert database.session.scalars(select(User.email)).all() == ["ada@bücher.example"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Äda@example.com", "äda@example.com"),
        ("JOSÉ@example.com", "josé@example.com"),
        ("\uff41\uff44\uff41@example.com", "ada@example.com"),  # full-width letters
        ("strasse@example.com", "STRASSE@example.com"),
        ("straße@example.com", "STRASSE@example.com"),  # case-folded, ß is ss
    ],
)
def test_addresses_that_differ_in_case_or_unicode_form_are_one_user(client, first, second):
    assert create(client, first).status_code == 201
    response = create(client, second)
    assert response.status_code == 409, response.json


def test_a_deeply_nested_body_under_the_size_limit_is_a_400(client):
    body = "[" * 8000 + "]" * 8000  # 16,000 bytes: within MAX_CONTENT_LENGTH
    response = client.post("/users", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"]["message"] == "malformed JSON: nested too deeply"


def test_an_integer_of_5000_digits_is_a_400_not_a_500(client):
    response = client.post(
        "/users", data='{"email": ' + "1" * 5000 + "}", content_type="application/json"
    )
    assert response.status_code == 400
    assert (
        response.json["error"]["message"] == "malformed JSON: a number with more than 4,300 digits"
    )


def test_malformed_json_is_a_400(client):
    response = client.post("/users", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"]["message"].startswith("malformed JSON")


def test_a_json_body_that_is_not_an_object_is_a_400(client):
    response = client.post("/users", json=["ada@example.com"])
    assert response.status_code == 400
    assert response.json["error"]["message"] == "body: Invalid input type."


def test_a_body_that_is_not_json_is_a_415(client):
    response = client.post("/users", data="email=ada@example.com")
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"


def test_a_body_over_16_kib_is_a_413(client):
    response = client.post("/users", data="x" * (16 * 1024 + 1), content_type="application/json")
    assert response.status_code == 413
    assert error_code(response) == "request_entity_too_large"


def test_get_a_missing_user_is_a_404(client):
    response = client.get("/users/999999")
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_an_id_beyond_the_column_is_a_404_not_a_500(client):
    assert client.get(f"/users/{2**31}").status_code == 404


def test_an_unknown_path_is_a_json_404(client):
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_a_wrong_method_is_a_json_405_with_allow(client):
    response = client.put("/users/1", json={})
    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_delete_a_user(client):
    location = create(client, "ada@example.com").headers["Location"]
    assert client.delete(location).status_code == 204
    assert client.get(location).status_code == 404
    assert client.delete(location).status_code == 404


def emails(client, **query) -> tuple[list[str], int | None]:
    page = client.get("/users", query_string=query).json
    return [user["email"] for user in page["users"]], page["next_after"]


def test_pages_follow_the_cursor_in_id_order(client):
    for n in range(5):
        create(client, f"user{n}@example.com")
    first, after = emails(client, limit=2)
    second, after = emails(client, limit=2, after=after)
    third, end = emails(client, limit=2, after=after)
    assert first + second + third == [f"user{n}@example.com" for n in range(5)]
    assert end is None


def test_a_page_defaults_to_50_and_is_capped_at_200(client, database):
    database.session.add_all(User(email=f"user{n}@example.com") for n in range(201))
    database.session.commit()
    default, _ = emails(client)
    capped, after = emails(client, limit=1000)
    assert (len(default), len(capped)) == (50, 200)
    assert after is not None


@pytest.mark.parametrize(
    "query", [{"limit": "0"}, {"limit": "ten"}, {"after": "-1"}, {"limit": "²"}]
)
def test_a_bad_page_parameter_is_a_400_naming_it(client, query):
    response = client.get("/users", query_string=query)
    assert response.status_code == 400
    assert response.json["error"]["message"].startswith(next(iter(query)))


def test_an_unexpected_error_is_a_500_without_internals(app):
    from app import create_app

    broken = create_app("testing")

    @broken.get("/broken")
    def explode():
        raise RuntimeError("password=hunter2 at db.internal")

    response = broken.test_client().get("/broken")
    assert response.status_code == 500
    assert response.json == {
        "error": {"code": "internal_error", "message": "internal server error"}
    }


def test_the_view_s_rollback_after_a_duplicate_leaves_the_test_s_session_usable(client, database):
    for _ in range(2):
        response = client.post("/users", json={"email": "twice@example.com"})
    assert response.status_code == 409  # the view caught the IntegrityError and rolled back
    database.session.add(User(email="after@example.com"))
    database.session.commit()
    emails = database.session.scalars(select(User.email).order_by(User.id)).all()
    assert emails == ["twice@example.com", "after@example.com"]


def test_options_is_a_405_in_the_error_envelope(client):
    response = client.open("/users", method="OPTIONS")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
