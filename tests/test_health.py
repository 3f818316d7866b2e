"""/health answering for the app's database."""


def test_health_says_ok_when_the_database_answers(client):
    response = client.get("/health")
    assert (response.status_code, response.json) == (200, {"status": "ok", "database": "ok"})


def test_a_session_that_fails_to_close_after_the_answer_keeps_the_answer(app, monkeypatch):
    """Mocked: no real server can be made to fail between the answer and the session's close."""
    from flask_sqlalchemy.session import Session
    from sqlalchemy.exc import OperationalError

    closes = []

    def close(self):
        closes.append(self)
        if len(closes) == 1:
            raise OperationalError(
                "ROLLBACK", {}, Exception("server closed the connection unexpectedly")
            )

    monkeypatch.setattr(Session, "close", close)
    response = app.test_client().get("/users")  # its own app context, torn down at its end
    assert (response.status_code, response.is_json) == (200, True)
    assert closes, "the session was never closed: the failure was not exercised"
