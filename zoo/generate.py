"""`zoo generate RUN`: samples from a finished run, whatever its model.

The run's `config.json` names the model; its task's `generate` hook does the
work (a PNG grid for `dcgan`, text for `gpt2_textgen`).
"""

import json
import os

from zoo import registry


def main(args):
    """Runs `zoo generate` for parsed arguments; returns the exit status."""
    run = os.fspath(args.run)
    config_path = os.path.join(run, "config.json")
    if not os.path.isdir(run):
        raise FileNotFoundError(f"Run directory '{run}' not found.")
    if not os.path.exists(config_path):
        raise FileNotFoundError(
            f"'{run}' is not a zoo run directory: it has no config.json. "
            "`zoo generate` takes a directory made by `zoo train`."
        )
    with open(config_path) as f:
        name = json.load(f)["model_name"]
    entry = registry.get_entry(name)
    if not os.path.exists(os.path.join(run, "model.keras")):
        raise FileNotFoundError(
            f"Run '{run}' has not finished: it has no model.keras yet. Rerun its "
            "training command with the same --run-dir to finish it."
        )
    return entry.task.generate(run, args)
