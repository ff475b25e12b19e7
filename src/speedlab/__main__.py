"""`python -m speedlab` is the `speedlab` command."""

import sys

from speedlab.cli import main

sys.exit(main())
