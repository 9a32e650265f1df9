"""``python -m pipelines.demo_tenant``: kept where users and scripts call it; the command
lives in ``pipelines.demo.load``."""

import sys

from pipelines.demo.load import main

if __name__ == "__main__":
    sys.exit(main())
