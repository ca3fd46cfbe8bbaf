"""`python -m task1 ...` is `harness embed ...`."""

from core.cli import run_click
from task1.cli import embed

run_click(embed, prog_name="python -m task1")
