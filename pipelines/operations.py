"""``python -m pipelines.operations``: kept where users and scripts call it; the command
lives in ``pipelines.operation.record``."""

import sys

from pipelines.operation.record import main

if __name__ == "__main__":
    sys.exit(main())
