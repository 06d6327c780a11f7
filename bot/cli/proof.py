"""`tasktrail proof check REF`: run a task's proof checks now and print each result."""

from __future__ import annotations

import sys

import click

from bot.cli.main import Context
from bot.cli.output import emit_json, print_proof_checks

pass_ctx = click.make_pass_decorator(Context)


@click.group("proof")
def proof_group() -> None:
    """Proof checks: whether a task's artifacts are really there."""


@proof_group.command("check")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
@pass_ctx
def check_cmd(obj: Context, ref: str, as_json: bool) -> None:
    """Run the proof checks of task REF now. Exits 1 unless every check passed."""
    task = obj.ledger.check_proof(ref)
    if as_json:
        emit_json({"task": task.to_json(with_details=True)})
    else:
        print_proof_checks(task)
    if task.proof_status != "verified":
        sys.exit(1)
