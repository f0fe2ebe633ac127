"""``python -m clipforge.toyworld.train``: the training command line (``cli.py``)."""

from clipforge.toyworld.train.cli import main

main()
