"""The runner every command line of the project goes through: a UserError ends as one line and its exit code."""

from __future__ import annotations

import sys

import click

from core.challenge import TRACKS
from core.errors import UserError


def track_option(default: int | None = 3, help: str = "The competition track: 1, 2 or 3."):
    """--track as every command takes it: one of 1, 2, 3 on the command line, an int (or None) after it."""
    return click.option("--track", type=click.Choice([str(t) for t in TRACKS]),
                        default=None if default is None else str(default), show_default=default is not None,
                        callback=lambda _ctx, _param, value: None if value is None else int(value), help=help)


def run_click(command: click.Command, args=None, prog_name: str | None = None) -> None:
    """Run a click command; a UserError becomes one line on stderr and its exit code."""
    try:
        rc = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except UserError as e:
        click.echo(e.one_line(), err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except click.UsageError as e:
        hint = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
        click.echo(f"error: {' '.join(e.format_message().split())}{hint}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"error: {' '.join(e.format_message().split())}", err=True)
        sys.exit(e.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)
