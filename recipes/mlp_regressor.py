"""Recipe: train `mlp_regressor` with the shared trainer.

    python recipes/mlp_regressor.py                 # embedded default data and settings
    python recipes/mlp_regressor.py --epochs 5 --set KEY=VALUE

The same as `zoo train mlp_regressor`; `--help` lists every flag.
"""

import sys

from zoo import recipe

NAME = "mlp_regressor"


def main(argv=None):
    return recipe.main(NAME, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
