"""The browser tests run only from ``nox -s docs_browser``, which builds the site and names it in ``XE_VERIFY_SITE``.

Anywhere else (``nox -s tests`` in particular, which has neither the built site nor a browser driver) this folder is
not collected at all.
"""

import os

collect_ignore_glob = [] if os.environ.get("XE_VERIFY_SITE") else ["*.py"]
