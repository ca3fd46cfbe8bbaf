"""`python -m task2 train|predict`: the same commands as `harness train|predict`."""

import click

from core.cli import run_click
from task2.cli import predict, train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Task 2: the CTR model (train, predict)."""


main.add_command(train)
main.add_command(predict)

if __name__ == "__main__":
    run_click(main, prog_name="python -m task2")
