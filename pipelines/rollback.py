"""``python -m pipelines.rollback``: kept where users and scripts call it; the command
lives in ``pipelines.operation.rollback``."""

import sys

from pipelines.operation.rollback import main

if __name__ == "__main__":
    sys.exit(main())
