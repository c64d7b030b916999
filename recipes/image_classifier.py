"""Recipe: train `image_classifier` with the shared trainer.

    python recipes/image_classifier.py                          # the 8x8 digits, a small ResNet
    python recipes/image_classifier.py --set backbone=mobilenet
    python recipes/image_classifier.py --data path/to/classes/ --set image_height=32 --set image_width=32

The same as `zoo train image_classifier`; `--help` lists every flag.
"""

import sys

from zoo import recipe

NAME = "image_classifier"


def main(argv=None):
    return recipe.main(NAME, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
