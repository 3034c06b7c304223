"""`python -m netspec.cli ...`: the command line, as the workers of `netspec train --nproc N` run it."""

import sys

from netspec.cli.app import main

sys.exit(main())
