"""``python -m dedupd`` = the ``dedupd`` command."""

import sys

from dedupd.cli import main

sys.exit(main())
