#!/usr/bin/env python
"""unlearnbench command line: `python bench.py --suite clip --methods slug,noop` (see README)."""

import sys

from unlearnbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
