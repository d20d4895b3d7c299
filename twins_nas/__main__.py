"""`python -m twins_nas ...` is the `twins-nas` command."""
from .cli import main

main()
