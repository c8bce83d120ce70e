"""``onestack`` command line: up, down, status, openrc, db upgrade, fernet rotate,
image-worker, fault (``cli_faults``), snapshot and reset (``cli_snapshots``), seed
(``cli_seed``)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from onestack import __version__, runstate
from onestack.cli_common import data_dir_option, settings_for
from onestack.config import Settings

_settings = settings_for


@click.group()
@click.version_option(__version__, prog_name="onestack")
def main() -> None:
    """onestack: an OpenStack-compatible cloud in one command."""


@main.command()
@data_dir_option
@click.option("--bind", help="Address the APIs listen on (default 127.0.0.1).")
@click.option("--public-host", help="Host name or address written into catalog URLs.")
@click.option("--identity-port", type=int, help="Identity API port (default 5000).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--compute-driver", type=click.Choice(["fake", "qemu", "auto"]),
              help="Hypervisor driver of the compute agent (default auto: QEMU when "
                   "it works here, else fake).")
@click.option("--network-driver", type=click.Choice(["noop", "linux", "auto"]),
              help="Network data plane: linux (bridges, DHCP, routers, NAT, security "
                   "groups; root), noop (model only) or auto (default: linux for real "
                   "guests when root and the tools are there).")
@click.option("--fake-hosts", type=click.IntRange(1, 100000),
              help="Number of fake compute hosts to run (fake driver).")
@click.option("--seed", "seed_file", envvar="ONESTACK_SEED",
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Seed file applied once the cloud is up (default: DATA/seed.yaml when "
                   "it exists).")
def up(data_dir: str | None, bind: str | None, public_host: str | None,
       identity_port: int | None, log_level: str | None, compute_driver: str | None,
       network_driver: str | None, fake_hosts: int | None, seed_file: Path | None) -> None:
    """Start every service of the cloud in the foreground (Ctrl-C stops it)."""
    settings = _settings(data_dir, bind=bind, public_host=public_host,
                         identity_port=identity_port, log_level=log_level,
                         compute_driver=compute_driver, compute_fake_hosts=fake_hosts,
                         network_driver=network_driver)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    while _serve_cloud(settings, seed_file):
        # SIGHUP: a snapshot was loaded (or asked for); start again in this process, and
        # let what the stopped cloud froze (``cloud.freeze_startup_heap``) go.
        gc.unfreeze()
        gc.collect()
    click.echo("onestack stopped")


def _serve_cloud(settings: Settings, seed_file: Path | None = None) -> bool:
    """Build and serve the cloud until it stops; True when it should start again (SIGHUP,
    after loading the snapshot ``onestack snapshot load`` asked for). Around it: the init
    hooks and the seed file (``onestack.seed``)."""
    from onestack import snapshots
    from onestack.bootstrap import build_cloud
    from onestack.cloud import pid_file
    from onestack.seed.hooks import run_hooks

    t0 = time.monotonic()
    first = not (settings.data_dir / "onestack.pid").exists() and not (
        settings.data_dir / "admin-openrc.sh").exists()
    sqlite = settings.db_url.startswith("sqlite:")
    if sqlite:
        snapshots.cleanup_partial(settings)
        try:
            if snapshots.finish_interrupted_load(settings):
                click.echo("finished loading a snapshot an earlier run was loading")
        except (OSError, snapshots.SnapshotError) as exc:
            raise click.ClickException(f"cannot finish loading a snapshot: {exc}") from exc
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    run_hooks(settings.data_dir, "boot", with_credentials=False)
    try:
        cloud = build_cloud(settings)
    except Exception as exc:  # noqa: BLE001 - report, do not trace back at the user
        raise click.ClickException(f"cannot start: {exc}") from exc
    cloud.before_stop = lambda: run_hooks(settings.data_dir, "shutdown")
    pidf = Path(pid_file(settings))
    pidf.write_text(str(os.getpid()))
    started = asyncio.Event()

    async def run() -> None:
        task = asyncio.create_task(cloud.serve(started=started))
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        if started.is_set():
            elapsed = time.monotonic() - t0
            if first and sqlite:
                # What ``onestack reset`` goes back to.
                await asyncio.to_thread(snapshots.save, settings, snapshots.FRESH,
                                        replace=True, internal=True)
            runstate.write(settings.data_dir, runstate.RunState(
                pid=os.getpid(), version=__version__, started_at=runstate.now(),
                data_dir=str(settings.data_dir),
                services={name: settings.url(name) for name in cloud.served},
                connect_host=runstate.connect_host(settings.bind),
                compute_driver=cloud.compute_driver,
                network_driver=str(getattr(getattr(cloud.network, "driver", None), "name",
                                           settings.network_driver))))
            click.echo(f"onestack {__version__} is up ({'first start, ' if first else ''}"
                       f"{elapsed:.2f}s); data in {settings.data_dir}")
            for name in cloud.apps:
                click.echo(f"  {name:<10} {settings.url(name)}")
            click.echo(f"  credentials: source {settings.data_dir / 'admin-openrc.sh'}  "
                       f"(or OS_CLOUD=onestack-admin with {settings.data_dir / 'clouds.yaml'})")
            sys.stdout.flush()
            if cloud.guest_job is not None:
                shown = asyncio.create_task(_show_guest_progress(cloud.guest_job))
                shown.add_done_callback(lambda _t: None)
            ready = asyncio.create_task(asyncio.to_thread(_when_ready, settings, seed_file))
        else:
            waiter.cancel()
            ready = None
        await task
        if ready is not None and not ready.done():
            ready.cancel()

    try:
        _run_loop(run())
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(f"cannot serve: {exc}") from exc
    finally:
        pidf.unlink(missing_ok=True)
        runstate.remove(settings.data_dir, os.getpid())
    if not cloud.restart_requested:
        return False
    name = snapshots.take_load_request(settings.data_dir)
    if name is None:
        return False  # a plain hangup (the terminal went away): stop, as before
    try:
        info = snapshots.load(settings, name, progress=click.echo)
        click.echo(f"loaded snapshot {name} ({info.seconds:.2f}s); starting again")
    except (OSError, snapshots.SnapshotError) as exc:
        click.echo(f"could not load snapshot {name}: {exc}; starting again", err=True)
    return True


async def _show_guest_progress(job: Any) -> None:
    """The guest image job's progress: a bar on a terminal, else a line per step."""
    progress = job.progress
    if sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("  guest image"), BarColumn(), TextColumn("{task.description}"),
                      TimeElapsedColumn(), transient=False) as bar:
            task = bar.add_task("starting", total=None)
            while progress.state == "building":
                bar.update(task, description=progress.step, completed=progress.done,
                           total=progress.total or None)
                await asyncio.sleep(0.2)
            bar.update(task, description=progress.step or progress.state,
                       completed=progress.total or 1, total=progress.total or 1)
    else:
        last = ""
        while progress.state == "building":
            if progress.step != last:
                last = progress.step
                click.echo(f"  guest image: {last} ({progress.done}/{progress.total})")
            await asyncio.sleep(0.2)
    if progress.state == "ready":
        from onestack.default_guest import DEFAULT_IMAGE_NAME

        click.echo(f"  guest image ready: openstack server create --image {DEFAULT_IMAGE_NAME}"
                   " --flavor m1.tiny --network private vm1")
    else:
        click.echo(f"  guest image not available: {progress.error}", err=True)
    sys.stdout.flush()


def _when_ready(settings: Settings, seed_file: Path | None) -> None:
    """Apply the seed file, then run the ``ready.d`` hooks (in a thread: the APIs answer
    meanwhile)."""
    from onestack.seed.hooks import run_hooks
    from onestack.seed.run import SEED_FILE, seed_cloud
    from onestack.seed.schema import SeedError

    path = seed_file or settings.data_dir / SEED_FILE
    if path.is_file():
        try:
            report = seed_cloud(settings, path)
            click.echo(f"  seeded from {path}: {report.summary()}")
        except SeedError as exc:
            click.echo(f"  seed file not applied: {exc}", err=True)
        sys.stdout.flush()
    run_hooks(settings.data_dir, "ready")


@main.command("image-worker")
@data_dir_option
@click.option("--port", type=int, required=True, help="Port of this image API process.")
@click.option("--bind", help="Address it listens on (default: the cloud's bind address).")
def image_worker(data_dir: str | None, port: int, bind: str | None) -> None:
    """Serve one more image API process over a running cloud's data (docs/image.md)."""
    from onestack.bootstrap import serve_image_worker as serve

    settings = _settings(data_dir, bind=bind)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _run_loop(serve(settings, port))
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(f"cannot serve: {exc}") from exc


def _run_loop(coro: Any) -> None:
    """Run the main coroutine on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - plain asyncio works too, only slower
        asyncio.run(coro)
        return
    uvloop.run(coro)


@main.command()
@data_dir_option
@click.option("--timeout", default=30.0, help="Seconds to wait for a clean stop.")
def down(data_dir: str | None, timeout: float) -> None:
    """Stop a running ``onestack up`` (SIGTERM, then wait)."""
    settings = _settings(data_dir)
    pidf = settings.data_dir / "onestack.pid"
    if not pidf.exists():
        click.echo("onestack is not running")
        return
    pid = int(pidf.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidf.unlink(missing_ok=True)
        click.echo("onestack was not running (stale pid file removed)")
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not runstate.process_running(pid):
            click.echo("onestack stopped")
            return
        time.sleep(0.05)
    raise click.ClickException(f"onestack (pid {pid}) did not stop within {timeout}s")


@main.command()
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(data_dir: str | None, as_json: bool) -> None:
    """Print the running cloud's services, agents and servers; exit non-zero if it is not
    running or a service is down."""
    from onestack.status import collect, healthy, render

    doc = collect(_settings(data_dir))
    if as_json:
        click.echo(json.dumps(doc, indent=1))
    else:
        for line in render(doc):
            click.echo(line)
    if not healthy(doc):
        sys.exit(1)


@main.command()
@data_dir_option
@click.argument("user", type=click.Choice(["admin", "demo"]))
def openrc(data_dir: str | None, user: str) -> None:
    """Print the rc file for USER (source it in a shell)."""
    settings = _settings(data_dir)
    path = settings.data_dir / f"{user}-openrc.sh"
    if not path.exists():
        raise click.ClickException(f"{path} does not exist yet; run 'onestack up' first")
    click.echo(path.read_text(), nl=False)


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@data_dir_option
def db_upgrade(data_dir: str | None) -> None:
    """Apply all database migrations."""
    from onestack.db.engine import Database
    from onestack.db.migrate import current, upgrade

    settings = _settings(data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.db_url)
    upgrade(database.engine)
    click.echo(f"database at revision {current(database.engine)}")
    database.dispose()


@main.group()
def fernet() -> None:
    """Token key management."""


@fernet.command("rotate")
@data_dir_option
def fernet_rotate(data_dir: str | None) -> None:
    """Rotate the Fernet token keys (restart or wait for other processes to reload)."""
    from onestack.identity.tokens import KeyRepository

    settings = _settings(data_dir)
    repo = KeyRepository(settings.fernet_key_dir, settings.fernet_max_active_keys)
    repo.rotate()
    click.echo(f"rotated keys in {settings.fernet_key_dir}")


def _register() -> None:
    from onestack.cli_faults import fault
    from onestack.cli_seed import seed
    from onestack.cli_snapshots import reset, snapshot

    main.add_command(fault)
    main.add_command(seed)
    main.add_command(snapshot)
    main.add_command(reset)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
