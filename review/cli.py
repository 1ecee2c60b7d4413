"""The operator's commands: `flask --app app <group> <command>` (PROTOCOL.md section 7)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

import click
from flask import Flask
from flask.cli import AppGroup

from review import users
from review.agents import killswitch
from review.agents.administration import register_agent
from review.agents.registry import list_agents
from review.audit import checkpoints, witness
from review.audit import export as audit_export_module
from review.audit.verifier import read_checkpoints
from review.doors.mcp_gateway.command import mcp_gateway
from review.errors import DomainError
from review.policy_cli import policy_cli
from review.reviewing import receipts
from review.services import current_services
from review.users import create_user, find_user

db_cli = AppGroup("db", help="Create or migrate the schema.")
users_cli = AppGroup("users", help="Reviewers, admins and auditors.")
agents_cli = AppGroup("agents", help="Registered agent runtimes.")
audit_cli = AppGroup("audit", help="The tamper-evident audit chain.")
receipts_cli = AppGroup("receipts", help="The key that signs approval receipts.")


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Create the schema, or migrate it to REVISION (default: the newest)."""
    svc = current_services()
    from review import migrate  # alembic is only needed here

    migrate.upgrade(svc.db, revision)
    click.echo(f"database at {revision} ({svc.db.engine.dialect.name})")


@db_cli.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the schema back to REVISION (`base` removes it all)."""
    from review import migrate  # alembic is only needed here

    migrate.downgrade(current_services().db, revision)
    click.echo(f"database at {revision}")


@db_cli.command("revision")
@click.option("-m", "--message", required=True)
def db_revision(message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    from review import migrate  # alembic is only needed here

    migrate.revision(current_services().db, message)


@users_cli.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "reviewer", "auditor"]), required=True)
@click.option("--email", default=None, help="Also counts as the user's identity as a principal.")
def users_create(name: str, role: str, email: str | None) -> None:
    """Create a user; the password is read from stdin (one line)."""
    password = sys.stdin.readline().rstrip("\r\n")
    svc = current_services()
    try:
        with svc.db.write() as session:
            create_user(session, name, role, password, email=email)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"created {role} {name}")


@users_cli.command("list")
def users_list() -> None:
    """Every user with their role, whether they may log in, and their email."""
    svc = current_services()
    with svc.db.read() as session:
        people = users.list_users(session)
        if not people:
            click.echo("no users")
        for user in people:
            state = "active" if user.is_active else "disabled"
            click.echo(f"{user.username}\t{user.role}\t{state}\temail={user.email or '-'}")


@users_cli.command("set-password")
@click.argument("name")
def users_set_password(name: str) -> None:
    """Give NAME a new password, read from stdin (one line); their sessions end."""
    password = sys.stdin.readline().rstrip("\r\n")
    svc = current_services()
    try:
        with svc.db.write() as session:
            users.set_password(session, name, password)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"new password for {name}; their sessions have ended")


@users_cli.command("disable")
@click.argument("name")
def users_disable(name: str) -> None:
    """NAME can no longer log in; their sessions end at their next request."""
    svc = current_services()
    try:
        with svc.db.write() as session:
            changed = users.disable_user(session, name)
    except DomainError as exc:
        fail(str(exc))
    click.echo(
        f"disabled {name}; their sessions have ended" if changed else f"{name} was already disabled"
    )


@users_cli.command("enable")
@click.argument("name")
def users_enable(name: str) -> None:
    """NAME may log in again."""
    svc = current_services()
    try:
        with svc.db.write() as session:
            changed = users.enable_user(session, name)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"enabled {name}" if changed else f"{name} was already enabled")


@agents_cli.command("create")
@click.argument("slug")
@click.option("--owner", "owners", multiple=True, required=True, help="A user who owns it (DRI).")
@click.option("--callback-url", default=None, help="Where decisions are POSTed.")
@click.option("--name", default=None, help="A display name (default: the slug).")
def agents_create(slug: str, owners: tuple[str, ...], callback_url: str | None, name: str | None):
    """Register an agent; its signing secret is printed once, as the last line."""
    try:
        created = register_agent(
            current_services(), slug, list(owners), name=name, callback_url=callback_url
        )
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"created agent {slug}, owned by {', '.join(owners)}")
    click.echo("its signing secret follows; it is not shown again:")
    click.echo(created.secret)


@agents_cli.command("list")
def agents_list() -> None:
    """Every agent with its state, owners, callback URL and secret fingerprints."""
    svc = current_services()
    with svc.db.read() as session:
        agents = list_agents(session)
        if not agents:
            click.echo("no agents")
        for agent in agents:
            owners = ",".join(u.username for u in agent.owners)
            prints = ",".join(s.fingerprint for s in agent.secrets)
            click.echo(
                f"{agent.slug}\t{agent.state}\towners={owners}\t"
                f"callback={agent.callback_url or '-'}\tsecrets={prints}"
            )


@agents_cli.command("aap-token")
@click.argument("slug")
def agents_aap_token(slug: str) -> None:
    """A new bearer token for the AAP door (/aap), printed once as the last line; the
    agent's earlier tokens keep working for COUNTERSIGN_SECRET_OVERLAP."""
    from review.doors.aap.tokens import issue_agent_token

    try:
        token = issue_agent_token(current_services(), slug)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"a new AAP token for {slug} (earlier ones keep working for the overlap)")
    click.echo("it follows; it is not shown again:")
    click.echo(token)


def _flip(action: str, slug: str, by: str, reason: str) -> None:
    svc = current_services()
    try:
        actor = killswitch.authorise(svc, slug, by, action)
        if action == "kill":
            flip = killswitch.kill(svc, slug, actor, reason)
        else:
            flip = killswitch.revive(svc, slug, actor, reason)
    except DomainError as exc:
        fail(str(exc))
    if not flip.changed:
        state = "killed" if action == "kill" else "active"
        click.echo(f"{slug} was already {state}: nothing changed")
    elif action == "kill":
        click.echo(f"killed {slug}: intake refused, {flip.ended} undecided deferrals ended")
    else:
        click.echo(f"revived {slug}: intake open again (killed deferrals stay killed)")


@agents_cli.command("kill")
@click.argument("slug")
@click.option("--by", required=True, help="Who flips it: an owner of the agent or an admin.")
@click.option("--reason", required=True, help="Why; the agent and the audit log get it.")
def agents_kill(slug: str, by: str, reason: str) -> None:
    """Flip the agent's kill switch: intake stops, undecided deferrals end, it is told."""
    _flip("kill", slug, by, reason)


@agents_cli.command("revive")
@click.argument("slug")
@click.option("--by", required=True, help="Who flips it: an owner of the agent or an admin.")
@click.option("--reason", required=True, help="Why; the agent and the audit log get it.")
def agents_revive(slug: str, by: str, reason: str) -> None:
    """Turn the kill switch off again; deferrals that were killed stay killed."""
    _flip("revive", slug, by, reason)


def _admin(by: str, action: str) -> killswitch.Actor:
    svc = current_services()
    with svc.db.read() as session:
        user = find_user(session, by)
    if user is None or user.role != "admin" or not user.is_active:
        fail(f"{by} may not {action}: only admins may")
    return killswitch.Actor("user", by)


@agents_cli.command("stop-all")
@click.option("--by", required=True, help="An admin.")
@click.option("--reason", required=True, help="The incident, for the agents and the audit log.")
def agents_stop_all(by: str, reason: str) -> None:
    """Kill every active agent at once (an incident), audited as one action."""
    actor = _admin(by, "stop every agent")
    try:
        flips = killswitch.stop_all(current_services(), actor, reason)
    except DomainError as exc:
        fail(str(exc))
    stopped = [f for f in flips if f.changed]
    click.echo(
        f"stopped {len(stopped)} agents ({', '.join(f.slug for f in stopped) or 'none'}); "
        f"{sum(f.ended for f in stopped)} undecided deferrals ended"
    )


@agents_cli.command("revive-all")
@click.option("--by", required=True, help="An admin.")
@click.option("--reason", required=True, help="Why, for the agents and the audit log.")
def agents_revive_all(by: str, reason: str) -> None:
    """Revive every killed agent (revive them one by one with `agents revive` instead)."""
    actor = _admin(by, "revive every agent")
    try:
        flips = killswitch.revive_all(current_services(), actor, reason)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"revived {len(flips)} agents ({', '.join(f.slug for f in flips) or 'none'})")


@audit_cli.command("verify")
@click.option(
    "--trusted",
    "trusted",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="An auditor's own copy of signed checkpoints (witness file or export); repeatable.",
)
def audit_verify(trusted: tuple[str, ...]) -> None:
    """Walk the chain, check every signed checkpoint in the database, and compare with the
    witness file and any --trusted copies; exit 1 naming the first problem."""
    svc = current_services()
    key = checkpoints.load_key(svc.settings.audit_key_file)  # afresh: it may have been replaced
    witness_file = svc.settings.audit_witness_file
    sources = _witness_sources(witness_file, trusted)
    witnessed = [record for _path, found in sources for record in found]
    with svc.db.read() as session:
        result = checkpoints.verify_log(session, key, witnessed)
        signed = checkpoints.latest(session) is not None
    click.echo(result.describe())  # the verdict line (PROTOCOL.md); what agreed follows
    if not result.ok:
        sys.exit(1)
    if signed and not os.path.exists(witness_file):
        click.echo(
            f"no witness file at {witness_file} although the database holds checkpoints: "
            "only the database's own checkpoints were checked"
        )
    for path, found in sources:
        newest = max((r["seq"] for _w, r in found), default=0)
        click.echo(f"{path}: {len(found)} witnessed checkpoints agree, the newest at {newest}")
    newest = max((r["seq"] for _w, r in witnessed), default=0)
    if witnessed and newest < result.count:
        click.echo(f"events {newest + 1} to {result.count} are not witnessed yet")


def _witness_sources(witness_file: str, trusted: tuple[str, ...]):
    """The checkpoints of the witness file (if there is one yet) and of each trusted copy;
    exit 1 when one cannot be read (a damaged or doctored file is a finding too)."""
    sources = []
    files = [(path, "trusted") for path in trusted]
    if os.path.exists(witness_file):
        files.insert(0, (witness_file, "witness"))
    for path, kind in files:
        try:
            sources.append((path, read_checkpoints(path)))
        except (OSError, ValueError) as exc:
            click.echo(f"BAD: cannot read the {kind} file: {exc}")
            sys.exit(1)
    return sources


@audit_cli.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign and store a checkpoint of the log now, and witness it (file, URL); the worker
    also does it on a timer."""
    svc = current_services()
    made = checkpoints.take(svc, force=True, witnessed=False)
    if made is None:
        click.echo("nothing new since the last checkpoint")
        return
    click.echo(f"checkpoint {made.id}: {made.seq} events, head {made.head_hash}")
    for note in witness.publish(svc, made, checkpoints.cached_key(svc.settings.audit_key_file)):
        click.echo(note)


@audit_cli.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
def audit_export(fmt: str) -> None:
    """Stream the whole log to stdout, with its checkpoints and public key."""
    svc = current_services()
    key = checkpoints.load_key(svc.settings.audit_key_file)
    lines = audit_export_module.jsonl if fmt == "jsonl" else audit_export_module.csv_lines
    with svc.db.read() as session:
        for line in lines(session, key):
            click.echo(line, nl=False)


@receipts_cli.command("rotate-key")
def receipts_rotate_key() -> None:
    """Sign receipts with a new key from now on; the old public key stays in the JWKS
    until the receipts it signed have expired."""
    done = receipts.rotate_key(current_services().settings)
    until = datetime.fromtimestamp(done.old_listed_until, UTC)
    click.echo(f"receipts are signed with {done.new.kid} from now on")
    click.echo(f"{done.old.kid} stays in /.well-known/jwks.json until {until:%Y-%m-%dT%H:%M:%SZ}")


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
def worker(burst: bool) -> None:
    """Run the rq worker (with rq's scheduler) on Countersign's queues."""
    from approval_queue.worker import run_worker

    run_worker(current_services(), burst=burst)


@click.command("serve")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
@click.option("--workers", default=2, type=int, help="gunicorn worker processes")
def serve(host: str, port: int, workers: int) -> None:
    """Everything at once, for a laptop: migrate, then web (gunicorn) and the worker."""
    from review.devserver import run_all

    run_all(current_services(), host=host, port=port, workers=workers)


def init_app(app: Flask) -> None:
    for group in (db_cli, users_cli, agents_cli, audit_cli, receipts_cli, policy_cli):
        app.cli.add_command(group)
    app.cli.add_command(worker)
    app.cli.add_command(serve)
    app.cli.add_command(mcp_gateway)
