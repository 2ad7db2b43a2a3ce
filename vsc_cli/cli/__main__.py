import sys

from vsc_cli.cli import main

sys.exit(main())
