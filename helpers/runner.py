"""``python -m helpers.runner``: the command line of :mod:`helpers.tools.runner` (kept for make and habit).

Nothing imports this module; it only runs as a program, so the layering rule that nothing
imports ``helpers.tools`` holds (an entry point sits on top of every layer).
"""

import sys

if __name__ == "__main__":
    from helpers.tools.runner import main

    sys.exit(main())
