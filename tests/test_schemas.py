"""The schemas' own fields, on their own: no app, no database."""

import pytest
from apiflask import Schema
from marshmallow import ValidationError

from app.schemas import Text


class Note(Schema):
    text = Text(required=True)


def test_text_refuses_the_nul_character_postgresql_cannot_store():
    with pytest.raises(ValidationError) as refused:
        Note().load({"text": "a\u0000b"})
    assert refused.value.messages == {"text": ["Must not contain the NUL character (\\u0000)."]}


def test_text_takes_any_other_string():
    assert Note().load({"text": "ü\u2028\t "}) == {"text": "ü\u2028\t "}
