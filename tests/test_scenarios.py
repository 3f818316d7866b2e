"""Scenarios (scenarios/NAME.py): data built once into a template, copied for the tests."""

import shutil

import pytest
from sqlalchemy import func, select

from app.models import User
from steps import PROJECT, scenarios


@pytest.mark.scenario("ten_users")
def test_a_query_against_a_scenario_of_its_own(client):
    first = client.get("/users?limit=4").get_json()
    assert [user["email"] for user in first["users"]] == [f"user{n}@example.com" for n in range(4)]
    rest = client.get(f"/users?limit=50&after={first['next_after']}").get_json()
    assert len(rest["users"]) == 6 and rest["next_after"] is None


@pytest.mark.scenario("ten_users")
def test_what_a_test_commits_in_a_scenario_is_gone_after_it(database):
    database.session.execute(User.__table__.delete())
    database.session.commit()
    assert database.session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.scenario("ten_users")
def test_the_next_test_has_the_whole_scenario_again(database):
    assert database.session.scalar(select(func.count()).select_from(User)) == 10


def test_a_test_without_a_scenario_has_no_rows(database):
    assert database.session.scalar(select(func.count()).select_from(User)) == 0


def test_a_scenario_built_on_another_is_rebuilt_when_that_one_changes(tmp_path, monkeypatch):
    scenario_folder = shutil.copytree(PROJECT / "scenarios", tmp_path / "scenarios")
    monkeypatch.setattr(scenarios, "FOLDER", scenario_folder)
    (scenario_folder / "ten_users_and_more.py").write_text(
        '"""ten_users, and one more."""\n\nfrom scenarios import ten_users\n'
    )
    (scenario_folder / "ten_users.sql").write_text("-- bulk data beside the module\n")
    before = {name: scenarios.digest(name) for name in ("ten_users", "ten_users_and_more")}
    (scenario_folder / "ten_users.sql").write_text("-- edited\n")
    after = {name: scenarios.digest(name) for name in ("ten_users", "ten_users_and_more")}
    assert after["ten_users"] != before["ten_users"]
    assert after["ten_users_and_more"] != before["ten_users_and_more"]
    many = scenarios.digest("many_users")
    (scenario_folder / "ten_users_and_more.py").write_text('"""Edited."""\n')
    assert scenarios.digest("ten_users") == after["ten_users"]
    assert scenarios.digest("many_users") == many
    assert scenarios.summary("ten_users_and_more") == "Edited."
