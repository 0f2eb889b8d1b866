"""`python -m mmlightning ...`: see `mmlightning.cli`."""
import sys

from mmlightning.cli import main

sys.exit(main())
