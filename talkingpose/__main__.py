"""`python -m talkingpose …` runs the command line."""
import sys

from .cli import main

sys.exit(main(prog="python -m talkingpose"))
