"""`python -m mmlightning ...`: see `mmlightning.cli`."""
import sys

from mmlightning.cli import main

if __name__ == "__main__":   # not when a worker process imports it
    sys.exit(main())
