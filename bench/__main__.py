"""`python -m tensorsmith.bench` is the `bench` command."""

import sys

from .cli import main

sys.exit(main())
