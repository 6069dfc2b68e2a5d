"""``python -m stream_app.tools.stack``: the same command line as ``stream-app stack``."""

import sys

from .cli import main_stack

sys.exit(main_stack())
