"""``python -m pipelines.stats``: kept where users and scripts call it; the command
lives in ``pipelines.operation.stats``."""

import sys

from pipelines.operation.stats import main

if __name__ == "__main__":
    sys.exit(main())
