"""``onestack snapshot save|load|list|delete`` and ``onestack reset`` (``onestack.snapshots``).

Saving works on a running or stopped cloud. Loading (and reset) on a stopped cloud replaces
its state; on a running one it asks the cloud to stop, load and start again in the same
process (SIGHUP), and waits until it answers again.
"""

from __future__ import annotations

import os
import signal
import time

import click
import httpx

from onestack import runstate, snapshots
from onestack.cli_common import data_dir_option, settings_for
from onestack.common.units import human_size
from onestack.config import Settings


def _settings(data_dir: str | None) -> Settings:
    return settings_for(data_dir)


@click.group()
def snapshot() -> None:
    """Save the whole cloud's state and go back to it (SQLite clouds)."""


@snapshot.command("save")
@data_dir_option
@click.argument("name")
@click.option("--force", is_flag=True, help="Replace a snapshot of that name.")
def snapshot_save(data_dir: str | None, name: str, force: bool) -> None:
    """Save the cloud's state as NAME (running or stopped)."""
    try:
        info = snapshots.save(settings_for(data_dir), name, replace=force)
    except (OSError, snapshots.SnapshotError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"saved {name}: {info.files} files, {human_size(info.size_bytes)} "
               f"({human_size(info.linked_bytes)} shared with the cloud) in {info.seconds:.2f}s")


@snapshot.command("list")
@data_dir_option
def snapshot_list(data_dir: str | None) -> None:
    """List the saved snapshots."""
    infos = snapshots.list_snapshots(settings_for(data_dir))
    for info in infos:
        click.echo(f"{info.name:<24} {info.created_at}  {human_size(info.size_bytes):>10}  "
                   f"onestack {info.version}")
    if not infos:
        click.echo("no snapshots")


@snapshot.command("delete")
@data_dir_option
@click.argument("name")
def snapshot_delete(data_dir: str | None, name: str) -> None:
    """Delete snapshot NAME."""
    try:
        snapshots.delete(settings_for(data_dir), name)
    except (OSError, snapshots.SnapshotError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"deleted {name}")


@snapshot.command("load")
@data_dir_option
@click.argument("name")
@click.option("--timeout", default=120.0, help="Seconds to wait for a running cloud.")
def snapshot_load(data_dir: str | None, name: str, timeout: float) -> None:
    """Go back to snapshot NAME (a running cloud restarts in place)."""
    _load(settings_for(data_dir), name, timeout)


@click.command()
@data_dir_option
@click.option("--timeout", default=120.0, help="Seconds to wait for a running cloud.")
def reset(data_dir: str | None, timeout: float) -> None:
    """Go back to the freshly bootstrapped cloud (fault rules cleared too)."""
    _load(settings_for(data_dir), snapshots.FRESH, timeout)


def _load(settings: Settings, name: str, timeout: float) -> None:
    shown = "the first start" if name == snapshots.FRESH else name
    t0 = time.monotonic()
    state = runstate.read(settings.data_dir)
    try:
        if state is None or not state.alive():
            if (settings.data_dir / "onestack.pid").exists() and _pid_alive(settings):
                raise click.ClickException("onestack is starting or stopping; try again")
            snapshots.load(settings, name, progress=click.echo)
            click.echo(f"loaded {shown} in {time.monotonic() - t0:.2f}s")
            return
        snapshots.request_load(settings, name)
    except (OSError, snapshots.SnapshotError) as exc:
        raise click.ClickException(str(exc)) from exc
    os.kill(state.pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = runstate.read(settings.data_dir)
        if new is not None and new.started_at != state.started_at and _answers(new):
            click.echo(f"loaded {shown}; the cloud is up again "
                       f"({time.monotonic() - t0:.2f}s)")
            return
        time.sleep(0.05)
    raise click.ClickException(f"the cloud did not come back within {timeout:.0f}s "
                               "(see its output)")


def _pid_alive(settings: Settings) -> bool:
    try:
        pid = int((settings.data_dir / "onestack.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _answers(state: runstate.RunState) -> bool:
    try:
        for url in state.services.values():
            local = runstate.local_url(url, state.connect_host)
            if httpx.get(local + "/healthcheck", timeout=2).status_code != 200:
                return False
    except httpx.HTTPError:
        return False
    return True
