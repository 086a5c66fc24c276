"""``python -m rbtw.cli``: the rbtw command."""

from rbtw.cli import main

main()
