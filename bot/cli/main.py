"""`tasktrail` entry point: global options, lazy command loading, one error translator."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from bot.settings import Settings
    from ledger import Ledger

#: command name -> "module:attribute". Modules are imported only when their command runs.
COMMANDS: dict[str, str] = {
    "list": "bot.cli.tasks:list_cmd",
    "show": "bot.cli.tasks:show_cmd",
    "create": "bot.cli.tasks:create_cmd",
    "start": "bot.cli.tasks:start_cmd",
    "heartbeat": "bot.cli.tasks:heartbeat_cmd",
    "progress": "bot.cli.tasks:progress_cmd",
    "finish": "bot.cli.tasks:finish_cmd",
    "artifact": "bot.cli.tasks:artifact_cmd",
    "notify": "bot.cli.tasks:notify_cmd",
    "cancel": "bot.cli.tasks:cancel_cmd",
    "import": "bot.cli.importer:import_group",
    "retry": "bot.cli.delivery:retry_cmd",
    "dismiss": "bot.cli.delivery:dismiss_cmd",
    "deliveries": "bot.cli.delivery:deliveries_cmd",
    "serve": "bot.cli.serve:serve_cmd",
    "worker": "bot.cli.serve:worker_cmd",
    "run": "bot.cli.run:run_cmd",
    "token": "bot.cli.tokens:token_cmd",
    "proof": "bot.cli.proof:proof_group",
    "audit": "bot.cli.ops:audit_cmd",
    "maintenance": "bot.cli.ops:maintenance_cmd",
    "auditor": "bot.cli.ops:auditor_cmd",
    "slack": "bot.cli.slack:slack_group",
    "discord": "bot.cli.discord:discord_group",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


class Context:
    """What every command gets: settings and a ledger, both made on first use."""

    def __init__(self, db_url: str | None, config_file: str | None) -> None:
        self.db_url = db_url
        self.config_file = config_file
        self._settings: Settings | None = None
        self._ledger: Ledger | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from bot.settings import load_settings

            overrides = {"database_url": self.db_url} if self.db_url else None
            self._settings = load_settings(config_file=self.config_file, overrides=overrides)
        return self._settings

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            import getpass

            from ledger import Ledger

            try:
                user = getpass.getuser()
            except (KeyError, OSError):
                user = "unknown"
            self._ledger = Ledger.connect(
                self.settings.database_url, self.settings.ledger, actor=f"cli:{user}"
            )
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()


@click.group(cls=LazyGroup, invoke_without_command=True)
@click.option(
    "--db",
    "db_url",
    envvar="TASKTRAIL_DATABASE_URL",
    metavar="URL",
    help="Ledger database (sqlite:///PATH or postgresql+psycopg://...). "
    "Default: a SQLite file in the user data directory.",
)
@click.option(
    "--config",
    "config_file",
    envvar="TASKTRAIL_CONFIG",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="TOML file with settings (the environment wins).",
)
@click.version_option(package_name="tasktrail")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, config_file: str | None) -> None:
    """tasktrail: one ledger for detached work (sub-agents, harnesses, cron, CLI jobs).

    With no command, lists the newest tasks.
    """
    ctx.obj = Context(db_url, config_file)
    ctx.call_on_close(ctx.obj.close)
    if ctx.invoked_subcommand is None:
        from bot.cli.tasks import list_cmd

        ctx.invoke(list_cmd)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> Any:
    from ledger.exceptions import InvalidInput, LedgerError

    try:
        return cli.main(args=argv, prog_name="tasktrail", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except InvalidInput as error:
        fail(str(error), 2)
    except LedgerError as error:
        fail(str(error), 1)
    except Exception as error:  # the settings error and the like: one line, no traceback
        from bot.settings import SettingsError

        if isinstance(error, SettingsError):
            fail(str(error), 2)
        raise
