"""Runs the tiny proxy several times in this one process, as a search worker runs its trials,
and prints (as JSON) the process's thread count after each run and whether each run's model and
optimizer were freed."""

import gc
import json
import os
import sys
import weakref

from xm2_megatron.config import load_config
from xm2_megatron.training.callback import Callback
from xm2_megatron.windtunnel.trial import run_trial


class Watch(Callback):
    def __init__(self):
        self.refs = []

    def on_fit_start(self, trainer) -> None:
        self.refs = [weakref.ref(trainer.state.model[0]), weakref.ref(trainer.state.optimizer)]


def main(recipe: str, output_dir: str) -> None:
    report = []
    for i, distributed in enumerate([False, True, True, False]):
        cfg = load_config(recipe, [f"name=run{i}", f"logging.output_dir={output_dir}",
                                   f"optimizer.use_distributed_optimizer={distributed}"])
        watch = Watch()
        exit_code = run_trial(cfg, [watch]).exit_code
        gc.collect()
        report.append({"exit_code": exit_code, "threads": len(os.listdir("/proc/self/task")),
                       "freed": [ref() is None for ref in watch.refs]})
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:])
