"""``python -m stream_app.stack``: kept as an entry point; the local stack lives in
:mod:`stream_app.tools.stack`."""

from .tools.stack import *  # noqa: F403 - public re-export
from .tools.stack import main_stack

if __name__ == "__main__":
    raise SystemExit(main_stack())
