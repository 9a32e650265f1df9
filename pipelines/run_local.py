"""``python -m pipelines.run_local``: kept where users and scripts call it; the command
lives in ``pipelines.demo.run_local``."""

import sys

from pipelines.demo.run_local import main

if __name__ == "__main__":
    sys.exit(main())
