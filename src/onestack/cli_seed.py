"""``onestack seed FILE``: apply a seed file to the running cloud (``onestack.seed``)."""

from __future__ import annotations

from pathlib import Path

import click

from onestack.cli_common import data_dir_option, settings_for
from onestack.seed.schema import SeedError


@click.command()
@data_dir_option
@click.option("--check", is_flag=True, help="Only check the file; change nothing.")
@click.option("--quiet", "-q", is_flag=True, help="Print the summary line only.")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def seed(data_dir: str | None, check: bool, quiet: bool, file: Path) -> None:
    """Create what FILE lists and the cloud lacks (idempotent: nothing is deleted)."""
    from onestack.seed.run import seed_cloud
    from onestack.seed.schema import load_seed

    try:
        if check:
            doc = load_seed(file)
            count = sum(len(v) for v in doc.values())
            click.echo(f"{file}: valid, {count} top-level entries")
            return
        report = seed_cloud(settings_for(data_dir), file,
                            progress=None if quiet else click.echo)
    except SeedError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"seeded from {file}: {report.summary()}")
