"""Reviewer groups (PROTOCOL.md section 10): the kernel's functions and the `groups` commands."""

import json

import pytest
from sqlalchemy import select

from review import groups
from review.audit.verify import verify_chain
from review.errors import Conflict, DomainError, NotFound
from review.models import AuditEvent
from review.users import create_user

PASSWORD = "correct horse battery"


@pytest.fixture
def staff(svc):
    with svc.db.write() as session:
        for name in ("rita", "sam"):
            create_user(session, name, "reviewer", PASSWORD)


def group_events(svc) -> list[tuple[str, str, dict]]:
    with svc.db.read() as session:
        rows = session.execute(
            select(AuditEvent.event_type, AuditEvent.actor_id, AuditEvent.payload)
            .where(AuditEvent.event_type.like("group.%"))
            .order_by(AuditEvent.seq)
        )
        return [(kind, actor, json.loads(payload)) for kind, actor, payload in rows]


def test_it_creates_groups_adds_and_removes_members_each_audited(svc, staff):
    with svc.db.write() as session:
        groups.create_group(session, "finance")
        assert groups.add_member(session, "finance", "rita") is True
        assert groups.add_member(session, "finance", "rita") is False
        assert groups.add_member(session, "finance", "sam") is True
        assert groups.remove_member(session, "finance", "sam") is True
        assert groups.remove_member(session, "finance", "sam") is False
    with svc.db.read() as session:
        assert groups.groups_of(session, "rita") == ["finance"]
        assert groups.groups_of(session, "sam") == []
        [listing] = groups.list_groups(session)
        assert (listing.name, listing.members) == ("finance", ("rita",))
        assert verify_chain(session).ok
    assert group_events(svc) == [
        ("group.created", "cli", {"group": "finance"}),
        ("group.member_added", "cli", {"group": "finance", "username": "rita"}),
        ("group.member_added", "cli", {"group": "finance", "username": "sam"}),
        ("group.member_removed", "cli", {"group": "finance", "username": "sam"}),
    ]


def test_it_refuses_a_duplicate_group_a_bad_name_an_unknown_group_or_user(svc, staff):
    with svc.db.write() as session:
        groups.create_group(session, "finance")
    for attempt, error in (
        (lambda s: groups.create_group(s, "finance"), Conflict),
        (lambda s: groups.create_group(s, " finance"), DomainError),
        (lambda s: groups.create_group(s, "a" * 101), DomainError),
        (lambda s: groups.create_group(s, "fin\nance"), DomainError),
        (lambda s: groups.add_member(s, "platform", "rita"), NotFound),
        (lambda s: groups.add_member(s, "finance", "nobody"), NotFound),
        (lambda s: groups.remove_member(s, "platform", "rita"), NotFound),
    ):
        with pytest.raises(error), svc.db.write() as session:
            attempt(session)
    assert [kind for kind, _, _ in group_events(svc)] == ["group.created"]


def test_set_memberships_replaces_a_users_groups_creating_new_ones(svc, staff):
    with svc.db.write() as session:
        groups.create_group(session, "finance")
        groups.add_member(session, "finance", "rita")
        groups.create_group(session, "ops")
        groups.add_member(session, "ops", "rita")
    with svc.db.write() as session:
        joined, left = groups.set_memberships(session, "rita", ["ops", "/platform", "Data Team"])
    assert (joined, left) == (["/platform", "Data Team"], ["finance"])
    with svc.db.read() as session:
        assert groups.groups_of(session, "rita") == ["/platform", "Data Team", "ops"]
        assert [g.name for g in groups.list_groups(session)] == [
            "/platform",
            "Data Team",
            "finance",
            "ops",
        ]
        assert verify_chain(session).ok
    events = group_events(svc)[4:]
    assert events == [
        ("group.created", "sso", {"group": "/platform"}),
        ("group.member_added", "sso", {"group": "/platform", "username": "rita"}),
        ("group.created", "sso", {"group": "Data Team"}),
        ("group.member_added", "sso", {"group": "Data Team", "username": "rita"}),
        ("group.member_removed", "sso", {"group": "finance", "username": "rita"}),
    ]
    with svc.db.write() as session:  # the same claim again changes nothing
        assert groups.set_memberships(session, "rita", ["ops", "Data Team", "/platform"]) == (
            [],
            [],
        )
    assert len(group_events(svc)) == 9


def test_set_memberships_refuses_a_bad_name_and_changes_nothing(svc, staff):
    with svc.db.write() as session:
        groups.set_memberships(session, "rita", ["ops"])
    with pytest.raises(DomainError), svc.db.write() as session:
        groups.set_memberships(session, "rita", ["finance", "bad\x00name"])
    with pytest.raises(NotFound), svc.db.write() as session:
        groups.set_memberships(session, "nobody", ["ops"])
    with svc.db.read() as session:
        assert groups.groups_of(session, "rita") == ["ops"]
        assert [g.name for g in groups.list_groups(session)] == ["ops"]


def test_the_groups_commands_create_add_remove_and_list(svc, runner, staff):
    assert runner.invoke(args=["groups", "list"]).output == "no groups\n"
    created = runner.invoke(args=["groups", "create", "finance"])
    assert created.exit_code == 0 and created.output == "created group finance\n"
    assert runner.invoke(args=["groups", "add", "finance", "rita"]).output == (
        "added rita to finance\n"
    )
    assert runner.invoke(args=["groups", "add", "finance", "sam"]).exit_code == 0
    again = runner.invoke(args=["groups", "add", "finance", "sam"])
    assert again.exit_code == 0 and again.output == "sam was already in finance\n"
    runner.invoke(args=["groups", "create", "platform"])
    listing = runner.invoke(args=["groups", "list"])
    assert listing.exit_code == 0
    assert listing.output == "finance\trita,sam\nplatform\t-\n"
    removed = runner.invoke(args=["groups", "remove", "finance", "sam"])
    assert removed.exit_code == 0 and removed.output == "removed sam from finance\n"
    assert runner.invoke(args=["groups", "list"]).output == "finance\trita\nplatform\t-\n"
    assert [kind for kind, actor, _ in group_events(svc) if actor == "cli"] == [
        "group.created",
        "group.member_added",
        "group.member_added",
        "group.created",
        "group.member_removed",
    ]


def test_the_groups_commands_refuse_with_one_line_and_exit_1(svc, runner, staff):
    runner.invoke(args=["groups", "create", "finance"])
    for args, message in (
        (["groups", "create", "finance"], "error: group 'finance' already exists"),
        (["groups", "create", ".bad"], "error: '.bad': a group name is"),
        (["groups", "add", "nope", "rita"], "error: no group 'nope'"),
        (["groups", "add", "finance", "nobody"], "error: no user 'nobody'"),
        (["groups", "remove", "nope", "rita"], "error: no group 'nope'"),
    ):
        result = runner.invoke(args=args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith(message), (args, result.output)
