"""The project's settings, with the data dir in a fresh temporary folder for each run."""

import os
import tempfile

os.environ.setdefault("TENANTRY_DATA_DIR", tempfile.mkdtemp(prefix="tenantry-tests-"))

from tenantry.settings import *  # noqa: E402, F403
