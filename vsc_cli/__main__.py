"""python -m vsc_cli: the same as the vsc command."""
from .cli import main

main()
