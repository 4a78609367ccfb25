"""python -m explainers: the command line (see explainers/cli.py)."""

import sys

from explainers.cli import main

if __name__ == "__main__":
    sys.exit(main())
