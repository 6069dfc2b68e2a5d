"""``python -m stream_app.cli``: the same as the ``stream-app`` command."""

import sys

from . import main

sys.exit(main())
