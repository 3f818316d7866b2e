from sqlalchemy import func, select

from app.models import User


def test__create_user(database):
    email = "some.email@server.com"
    user = User(email=email)
    database.session.add(user)
    database.session.commit()
    user = User.query.first()
    assert user.email == email


def test_nothing_leaks_between_tests(database):
    assert database.session.scalar(select(func.count()).select_from(User)) == 0


def test_a_rollback_by_the_code_keeps_earlier_commits(database):
    database.session.add(User(email="kept@example.com"))
    database.session.commit()
    database.session.add(User(email="dropped@example.com"))
    database.session.rollback()
    emails = database.session.scalars(select(User.email)).all()
    assert emails == ["kept@example.com"]


def test_a_commit_in_a_test_reaches_no_other_connection(app, database):
    database.session.add(User(email="uncommitted@example.com"))
    database.session.commit()
    with database.engine.connect() as other:  # what the next test, or anyone else, would see
        assert other.scalar(select(func.count()).select_from(User)) == 0
