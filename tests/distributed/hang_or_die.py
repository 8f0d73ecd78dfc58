"""A worker that blocks forever (HANG=1, as one waiting on a dead peer) or dies at once."""

import os
import sys
import time

if os.environ.get("HANG"):
    time.sleep(3600)
sys.exit(3)
