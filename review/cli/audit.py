"""The `audit` commands: verify (with witnesses), checkpoint, export (PROTOCOL.md section 7),
and shards (the chain's shard epochs)."""

from __future__ import annotations

import os
import sys

import click
from flask.cli import AppGroup

from review.audit import checkpoints, shards, witness
from review.audit import export as audit_export_module
from review.audit.verifier import read_checkpoints
from review.services import current_services

audit_cli = AppGroup("audit", help="The tamper-evident audit chain.")


@audit_cli.command("verify")
@click.option(
    "--trusted",
    "trusted",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="An auditor's own copy of signed checkpoints (witness file or export); repeatable.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=lambda: min(os.cpu_count() or 1, 4),
    show_default="the CPUs, up to 4",
    help="Processes that recompute hashes (used from 200,000 events on).",
)
def audit_verify(trusted: tuple[str, ...], jobs: int) -> None:
    """Walk the chain, check every signed checkpoint in the database, and compare with the
    witness file and any --trusted copies; exit 1 naming the first problem."""
    svc = current_services()
    key = checkpoints.load_key(svc.settings.audit_key_file)  # afresh: it may have been replaced
    witness_file = svc.settings.audit_witness_file
    sources = _witness_sources(witness_file, trusted)
    witnessed = [record for _path, found in sources for record in found]
    with svc.db.read() as session:
        result = checkpoints.verify_log(session, key, witnessed, jobs=jobs)
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
    heads = checkpoints.heads_of(made) or []
    if len(heads) > 1:
        summary = f"{made.seq} events in {len(heads)} shards, root of their heads {made.head_hash}"
    else:
        summary = f"{made.seq} events, head {made.head_hash}"
    click.echo(f"checkpoint {made.id}: {summary}")
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


@audit_cli.command("shards")
@click.argument("count", type=click.IntRange(1, 256), required=False)
def audit_shards(count: int | None) -> None:
    """Show the shard epochs; with COUNT, spread new events over COUNT chains from the
    next event on (a new epoch). Restart every web process and worker afterwards: until
    then they write to the shards they knew, which stays verifiable (docs/SCALING.md)."""
    svc = current_services()
    if count is not None:
        with svc.db.write() as session:
            made = shards.record_epoch(session, count)
        if made is None:
            click.echo(f"already {count} shards")
        else:
            click.echo(f"epoch {made.epoch}: {count} shards from event {made.first_seq} on")
    with svc.db.read() as session:
        for epoch in shards.epochs(session):
            click.echo(
                f"epoch {epoch.epoch}: {epoch.shards} shards from event {epoch.first_seq} "
                f"(recorded {epoch.at:%Y-%m-%d %H:%M:%S} UTC)"
            )
