"""`python -m vaezip` (and `torchrun -m vaezip train ...`) run the command line."""
from .cli import main

main()
