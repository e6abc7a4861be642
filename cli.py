"""`python cli.py …`: the command line run from a checkout (the same as the `talkingpose` console script)."""
import sys

from talkingpose.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="cli.py"))
