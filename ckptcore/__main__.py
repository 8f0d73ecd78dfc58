"""``python -m ckptcore`` and the ``ckptcore`` console script.

The command line needs typer and rich (the ``cli`` extra). Without them the command prints one
line saying what to install, instead of a traceback.
"""

from __future__ import annotations

import sys
from typing import Sequence

__all__ = ["CLI_PACKAGES", "main"]

#: The packages of the ``cli`` extra (and click, which typer brings).
CLI_PACKAGES = frozenset({"typer", "rich", "click"})

_HINT = (
    "ckptcore: the command line needs {missing}, which is not installed; "
    'install it with: pip install "ckptcore[cli]"'
)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``ckptcore`` command line, or say which extra to install.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
    """
    try:
        from ckptcore.cli import main as cli_main
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in CLI_PACKAGES:
            raise
        print(_HINT.format(missing=missing), file=sys.stderr)
        raise SystemExit(2) from None
    cli_main(argv)


if __name__ == "__main__":  # pragma: no cover
    main()
