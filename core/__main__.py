"""`python -m core ...` is the `mhogo` command, for when the console script is not on the PATH."""

from core.cli import main

main()
