"""The face of Raqib: command line, service, ingest pipeline and web app.

Nothing in monitor/, indexers/ or alerts/ imports this package; it sits on top of them.
"""

from importlib.metadata import PackageNotFoundError, version as _dist_version

try:
    __version__ = _dist_version("raqib")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "unknown"
