"""``python -m tasks.reference_worker``: the worker without Django's start-up cost."""

import sys

from tasks.reference_worker.cli import main

sys.exit(main())
