"""Helpers behind the Kubeflow integrations labs (Volcano gang scheduling, KServe serving).

Import the submodule you need, e.g. ``from helpers import backend``. Importing this
package has no side effects: no seeding, no network calls, no subprocesses.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
