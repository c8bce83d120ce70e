"""What every ``onestack`` command shares: the settings of a data dir (a configuration error
is a one-line message, not a traceback) and the ``--data-dir`` option."""

from __future__ import annotations

import click

from onestack.config import ConfigError, Settings, load_settings


def settings_for(data_dir: str | None, **overrides: object) -> Settings:
    try:
        return load_settings(data_dir, **overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


data_dir_option = click.option(
    "--data-dir", envvar="ONESTACK_DATA_DIR", type=click.Path(file_okay=False),
    help="Where onestack keeps its state (default ~/.local/share/onestack).")
