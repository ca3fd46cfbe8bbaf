"""Containment for a re-run: `plan` decides the limits, mounts and namespaces; `sandbox_init.py` applies them
and `rerun_driver.py` runs the package's module under an audit hook. The two scripts are copied beside
the package copy and run as files: they import nothing of the project."""
