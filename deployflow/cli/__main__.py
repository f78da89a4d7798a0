"""`python -m deployflow.cli`: how the dev stack and the tests run the CLI in a child process."""

from deployflow.cli import main

main()
