"""``python -m cli``: the ``octoprov`` command."""

from cli import main

main()
