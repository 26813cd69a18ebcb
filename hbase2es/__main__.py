"""``python -m hbase2es``."""

from .cli import main

main()
