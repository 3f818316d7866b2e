"""Named data for tests, demos and bug hunts: one module per scenario, its build(session) makes it.

Tests: @pytest.mark.scenario("ten_users"); people: inv db.seed ten_users, inv scenario ten_users.
"""
