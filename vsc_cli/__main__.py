"""python -m vsc_cli: the same as the vsc command."""
from vsc_cli.cli import main

main()
