"""``python -m metalcandle``: print the version and devices, run a small checked demo."""
import sys

from metalcandle.demo import main

sys.exit(main())
