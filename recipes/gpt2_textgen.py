"""Recipe: train `gpt2_textgen` with the shared trainer.

    python recipes/gpt2_textgen.py                 # embedded default data and settings
    python recipes/gpt2_textgen.py --epochs 5 --set KEY=VALUE

The same as `zoo train gpt2_textgen`; `--help` lists every flag.
"""

import sys

from zoo import recipe

NAME = "gpt2_textgen"


def main(argv=None):
    return recipe.main(NAME, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
