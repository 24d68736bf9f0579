"""How a missing optional dependency is named: the one command that installs its extra.

fastseg is installed from its checkout (`pip install -e .`): the name "fastseg" on PyPI belongs to
an unrelated project, so a hint must never say `pip install fastseg[...]`. The hint names this
interpreter's pip and the checkout's own folder, so it works verbatim whichever `pip` comes first
on PATH; an installed (non-editable) copy names its distribution, fastseg-cli.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "fastseg-cli"


def install_hint(extra: str) -> str:
    """`PYTHON -m pip install -e 'CHECKOUT[extra]'` (or the distribution's name outside a checkout)."""
    python = shlex.quote(sys.executable)
    if (CHECKOUT / "setup.cfg").is_file():
        return f"{python} -m pip install -e {shlex.quote(f'{CHECKOUT}[{extra}]')}"
    return f"{python} -m pip install {shlex.quote(f'{DISTRIBUTION}[{extra}]')}"
