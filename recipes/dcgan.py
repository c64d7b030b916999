"""Recipe: train `dcgan` with the shared trainer.

    python recipes/dcgan.py                 # embedded default data and settings
    python recipes/dcgan.py --epochs 5 --set KEY=VALUE

The same as `zoo train dcgan`; `--help` lists every flag.
"""

import argparse
import sys

from zoo import cli, registry

NAME = "dcgan"
DEFAULTS = dict(registry.get_entry(NAME).task.train_defaults)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_train_arguments(parser, DEFAULTS)
    return cli.run_training(NAME, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
