"""Recipe: train `dcgan` with the shared trainer.

    python recipes/dcgan.py                 # embedded default data and settings
    python recipes/dcgan.py --epochs 5 --set KEY=VALUE

The same as `zoo train dcgan`; `--help` lists every flag.
"""

import sys

from zoo import recipe

NAME = "dcgan"


def main(argv=None):
    return recipe.main(NAME, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
