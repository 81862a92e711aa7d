"""`python -m flows.cli`: the `aduana` command, as the console script runs it."""
from flows.cli import main

main()
