"""What the API takes and gives, declared once: validation and /openapi.json come from here."""

from apiflask import Schema
from apiflask.fields import Integer, List, Nested, String
from apiflask.validators import OneOf, Range
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import EMAIL_MAX_LENGTH
from flask import current_app
from marshmallow import ValidationError

DEFAULT_PAGE = 50
MAX_PAGE = 200


class Email(String):
    """An address as email-validator normalises it: trimmed, its domain lower-cased, in Unicode."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        # email-validator's own switch for tests: `.test` domains are accepted there.
        testing = current_app.config.get("TESTING", False)
        try:
            checked = validate_email(
                text.strip(), check_deliverability=False, strict=True, test_environment=testing
            )
            return checked.normalized
        except EmailNotValidError as error:
            raise ValidationError(str(error)) from None


class Text(String):
    """A string PostgreSQL can store: its text types hold no NUL character."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("Must not contain the NUL character (\\u0000).")
        return text


class NewUser(Schema):
    email = Email(
        required=True,
        metadata={
            "format": "email",
            "maxLength": EMAIL_MAX_LENGTH,
            "description": "trimmed, its domain lower-cased; unique ignoring case and Unicode forms",
        },
    )


class User(Schema):
    id = Integer(required=True, validate=Range(min=1))
    email = String(required=True, metadata={"maxLength": EMAIL_MAX_LENGTH})


class PageQuery(Schema):
    limit = Integer(
        load_default=DEFAULT_PAGE,
        validate=Range(min=1),
        metadata={"description": f"page size, capped at {MAX_PAGE}"},
    )
    after = Integer(
        load_default=0,
        validate=Range(min=0),
        metadata={"description": "the cursor: `next_after` of the previous page"},
    )


class UserPage(Schema):
    users = List(Nested(User), required=True)
    next_after = Integer(required=True, allow_none=True)


class Health(Schema):
    status = String(required=True, validate=OneOf(["ok", "unavailable"]))
    database = String(required=True, validate=OneOf(["ok", "unavailable"]))


class ErrorDetail(Schema):
    code = String(required=True)
    message = String(required=True)


class Error(Schema):
    """Every error the API answers: `{"error": {"code", "message"}}`."""

    error = Nested(ErrorDetail, required=True)
