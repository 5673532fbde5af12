"""`python -m mhogo ...` is the `mhogo` command, for when the console script is not on the PATH."""

from mhogo.cli import main

main()
