"""``python -m helpers.grading``: the command line of :mod:`helpers.tools.grading` (kept for make and habit).

Nothing imports this module; it only runs as a program, so the layering rule that nothing
imports ``helpers.tools`` holds (an entry point sits on top of every layer).
"""

import sys

if __name__ == "__main__":
    from helpers.tools.grading import main

    sys.exit(main())
