"""Allow ``python -m pyqrscp``."""

import sys

from pyqrscp.cli import main

sys.exit(main())
