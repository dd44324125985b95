"""``python -m opendojo.train ARGS`` (also under ``torchrun ... -m opendojo.train``) = ``dojo train ARGS``."""

import sys

from opendojo.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
