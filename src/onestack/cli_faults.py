"""``onestack fault``: add, list, remove and clear fault rules (``onestack.faults``).

The commands edit the data dir's rule file directly (same rules as the admin-only
``/_onestack/faults`` API), so they work whether the cloud runs or not; like the API they
return once every process of a running cloud applies the change (``faults.rules.SETTLE``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from onestack.cli_common import data_dir_option, settings_for
from onestack.common.errors import ValidationError
from onestack.faults.rules import KINDS, SERVICES, SETTLE, FaultTable, parse_rule


def _table(ctx: click.Context, data_dir: str | None) -> FaultTable:
    settings = settings_for(data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return FaultTable(settings.data_dir)




@click.group()
def fault() -> None:
    """Make chosen operations fail or slow down on purpose (off until a rule exists)."""


@fault.command("add")
@data_dir_option
@click.option("--kind", type=click.Choice(KINDS), default="http", show_default=True,
              help="http: API requests; build: server builds end in ERROR; host_down: a "
                   "compute host stops; bus: RPC messages are dropped.")
@click.option("--service", type=click.Choice(SERVICES), help="http: which API (default *).")
@click.option("--method", help="http: HTTP method; bus: RPC method (glob, default *).")
@click.option("--path", help="http: request path glob, e.g. '*/servers' (default *).")
@click.option("--host", help="build, host_down: compute host glob (default *).")
@click.option("--topic", help="bus: topic glob, e.g. 'compute.*' (default *).")
@click.option("--status", type=int, help="http: status to answer (default 503).")
@click.option("--message", help="The fault message.")
@click.option("--delay", type=float, help="http: seconds to wait first (alone: latency).")
@click.option("--rate", type=float, help="Probability that a match fires (default 1).")
@click.option("--count", type=int, help="Fire this many times, then disappear.")
@click.pass_context
def fault_add(ctx: click.Context, data_dir: str | None, **opts: Any) -> None:
    """Add a rule and print it."""
    body = {k: v for k, v in opts.items() if v is not None}
    try:
        rule = parse_rule(body)
        _table(ctx, data_dir).add(rule)
        time.sleep(SETTLE)
    except ValidationError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"{rule.id}  {rule.describe()}")


@fault.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the rules as JSON.")
@click.pass_context
def fault_list(ctx: click.Context, data_dir: str | None, as_json: bool) -> None:
    """List the rules in force."""
    rules = _table(ctx, data_dir).list()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rules], indent=1))
        return
    for rule in rules:
        click.echo(f"{rule.id}  {rule.describe()}")
    if not rules:
        click.echo("no fault rules")


@fault.command("remove")
@data_dir_option
@click.argument("rule_id")
@click.pass_context
def fault_remove(ctx: click.Context, data_dir: str | None, rule_id: str) -> None:
    """Remove one rule."""
    if not _table(ctx, data_dir).remove(rule_id):
        raise click.ClickException(f"no fault rule {rule_id}")
    time.sleep(SETTLE)
    click.echo(f"removed {rule_id}")


@fault.command("clear")
@data_dir_option
@click.pass_context
def fault_clear(ctx: click.Context, data_dir: str | None) -> None:
    """Remove every rule."""
    n = _table(ctx, data_dir).clear()
    time.sleep(SETTLE)
    click.echo(f"removed {n} fault rule{'s' if n != 1 else ''}")
