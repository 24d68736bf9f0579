"""The experiment trackers `fastseg train --log` can write to, and whether each is installed.

No torch or fastai here: the CLI lists the choices in `--help`, and a missing tracker is refused
before any work starts. The callbacks themselves are in `fastseg.training.tracking`.
"""

from __future__ import annotations

from importlib.util import find_spec

from fastseg.errors import FastsegError
from fastseg.extras import install_hint

# tracker -> the modules it needs (the pip extra of the same name installs them)
TRACKERS: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard",),
    "mlflow": ("mlflow", "sqlalchemy"),  # sqlalchemy: MLflow's default local store is sqlite:///mlflow.db
    "wandb": ("wandb",),
}


def require_trackers(names: tuple[str, ...] | list[str]) -> None:
    """Raise, in one line naming the extra to install, for an unknown or uninstalled tracker."""
    for name in names:
        if name not in TRACKERS:
            raise FastsegError(f"--log {name}: choose one of {', '.join(TRACKERS)}")
        missing = [module for module in TRACKERS[name] if find_spec(module) is None]
        if missing:
            raise FastsegError(f"--log {name} needs {', '.join(missing)}: {install_hint(name)}")
