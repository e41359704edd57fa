import labeler

from bot.testing import run_plugin

ISSUE = {"action": "opened", "issue": {"number": 7}, "repository": {"full_name": "o/r"}}


def test_a_new_issue_gets_the_configured_label() -> None:
    done = run_plugin(labeler, {**ISSUE, "sender": {"login": "ann"}}, event="issues", config={"label": "bug?"})
    assert done.writes == [("POST", "/repos/o/r/issues/7/labels", {"labels": ["bug?"]})]


def test_issues_opened_by_bots_are_left_alone() -> None:
    assert run_plugin(labeler, {**ISSUE, "sender": {"type": "Bot"}}, event="issues").requests == []
