"""``python -m opendojo.train ARGS`` (also under ``torchrun ... -m opendojo.train``) = ``dojo train ARGS``."""

import sys

from opendojo.train.command import main

if __name__ == "__main__":
    sys.exit(main())
