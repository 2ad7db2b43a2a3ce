"""python -m vsc_cli.cli: the same as the vsc command."""
import sys

from vsc_cli.cli import main

sys.exit(main())
