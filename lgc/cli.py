"""The `lgc` command at its old path (`python3 -m lgc.cli`); it lives in lgc.tools.cli."""
import sys

from .tools.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
