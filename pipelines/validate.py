"""``python -m pipelines.validate``: kept where users and scripts call it; the command
lives in ``pipelines.operation.validate``."""

import sys

from pipelines.operation.validate import main

if __name__ == "__main__":
    sys.exit(main())
