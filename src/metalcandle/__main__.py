"""``python -m metalcandle``: a short demo (filled in below)."""
from metalcandle.demo import main

main()
