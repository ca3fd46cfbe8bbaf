"""The `harness` command. Thin: parse, call a library function, render the result.

Subcommands are imported only when they run, so `harness validate` does not pay for importing torch.
stdout carries results (JSON alone under `--json`); logs and progress go to stderr.
"""

from __future__ import annotations

import importlib

import click

from core.cli import run_click

# name -> "module:attribute" of a click command. Each package owns its commands.
COMMANDS = {
    "validate": "harness.commands:validate_cmd",
    "synth": "harness.commands:synth_cmd",
    "score": "referee.score:score_cmd",
    "embed": "task1.cli:embed",
    "train": "task2.cli:train",
    "predict": "task2.cli:predict",
    "package": "harness.package:package_cmd",
    "verify": "referee.verify:verify_cmd",
    "audit": "referee.audit:audit_cmd",
    "fingerprint": "harness.commands:fingerprint_cmd",
    "preflight": "harness.pipeline:preflight_cmd",
}


class LazyGroup(click.Group):
    def __init__(self, *args, lazy: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mmctr-harness", prog_name="harness")
def cli():
    """Submission harness for the WWW 2025 MMCTR challenge (MicroLens-1M)."""


def main(args=None) -> None:
    run_click(cli, args=args, prog_name="harness")


if __name__ == "__main__":
    main()
