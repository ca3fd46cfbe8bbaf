"""`python -m harness`: the harness command.

Python puts the current folder first on the import path for `python -m`, so run inside a submission
package (which holds a copy of harness/, task1/ and task2/) it would import the package's copy. When
this file finds that `harness` came from the current folder and that folder is not the project this
harness is installed from, it re-executes the command with the current folder removed from the import
path, so that the installed harness runs and nothing of the package is imported (`verify` also keeps
the current folder off the path for task1/task2). This can only work while the package's
harness/__init__.py and __main__.py are the released ones, which run first: a changed copy runs its own
code before anything here. Organizers therefore run the `harness` command or `python -P -m harness`
(neither puts the current folder on the import path), or verify from outside the package;
PKG-RELEASED-CODE flags the changed copy.
"""

import json
import os
import sys

REEXEC_FLAG = "MMCTR_HARNESS_REEXEC"
REEXEC_CODE = ("import sys; del sys.path[0]; import runpy; "
               "runpy.run_module('harness', run_name='__main__', alter_sys=True)")


def _installed_root():
    """The folder holding the installed harness (the project of an editable install), or None."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution
    except ImportError:
        return None
    try:
        dist = distribution("mmctr-harness")
    except PackageNotFoundError:
        return None
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        info = {}
    url = info.get("url", "")
    if (info.get("dir_info") or {}).get("editable") and url.startswith("file://"):
        from urllib.parse import unquote

        return unquote(url[len("file://"):])
    return os.path.dirname(os.path.dirname(str(dist.locate_file("harness/__init__.py"))))


def _guard():
    here = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cwd = os.path.realpath(os.getcwd())
    if here != cwd:
        return  # not imported from the current folder
    installed = _installed_root()
    if installed and os.path.realpath(installed) == cwd:
        return  # the current folder is the project the harness is installed from
    if os.environ.get(REEXEC_FLAG) or not installed:
        sys.stderr.write("error: this folder has a harness/ of its own and no installed harness could run "
                         "instead; run `harness` from another folder (install it with scripts/setup_env.sh)\n")
        sys.exit(2)
    env = dict(os.environ, **{REEXEC_FLAG: "1"})
    os.execve(sys.executable, [sys.executable, "-c", REEXEC_CODE, *sys.argv[1:]], env)


_guard()

from harness.cli import main  # noqa: E402 - after the guard, so a package's copy is never imported

main()
