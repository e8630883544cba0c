"""One layout of the parallel-parity test (run under torchrun, or alone for the reference).

Modes:
  reference  world 1: save the initial weights, then run the steps
  layout     any TP x PP x DP: load the reference's initial weights, then run the steps
  compare    world 1: load gradient checkpoints and report their relative differences
             from the reference's, tensor by tensor
Each run writes the loss of every step and a dist checkpoint of the first step's gradients.
"""

import argparse
import json
from pathlib import Path

import torch
from megatron.core import dist_checkpointing, parallel_state

from xm2_megatron.config import load_config
from xm2_megatron.data.stream import StageDataStream
from xm2_megatron.model import build_model
from xm2_megatron.runtime import init_runtime, shutdown_runtime
from xm2_megatron.training.state import build_training_state
from xm2_megatron.training.step import forward_backward, train_step

RECIPE = Path(__file__).with_name("parity.yaml")


def _sharded_model_state(model):
    """Every chunk's sharded tensors (global layer numbers: any layout reads them back)."""
    if len(model) == 1:
        return model[0].module.sharded_state_dict()
    return {f"chunk{i}": chunk.module.sharded_state_dict() for i, chunk in enumerate(model)}


def _save_gradients(model, directory: Path):
    """Save each parameter's finalised gradient in place of its value (a dist checkpoint
    is layout independent, so any other layout can read it back); weights are restored."""
    params = [p for chunk in model for p in chunk.parameters()]
    weights = [p.data.clone() for p in params]
    for p in params:
        p.data.copy_(p.main_grad)
    directory.mkdir(parents=True, exist_ok=True)
    dist_checkpointing.save(_sharded_model_state(model), str(directory))
    for p, w in zip(params, weights):
        p.data.copy_(w)


def run(args):
    overrides = [f"parallel.tensor_parallel={args.tp}", f"parallel.pipeline_parallel={args.pp}"]
    overrides += args.overrides
    cfg = load_config(RECIPE, overrides)
    init_runtime(args.tp, args.pp, seed=cfg.train.seed,
                 virtual_pipeline=cfg.parallel.virtual_pipeline)
    cfg.validate(world_size=torch.distributed.get_world_size())
    model, optimizer, scheduler = build_training_state(cfg)
    out = Path(args.out)
    if args.mode == "reference":
        (out / "init").mkdir(parents=True, exist_ok=True)
        dist_checkpointing.save(_sharded_model_state(model), str(out / "init"))
    else:
        dist_checkpointing.load(_sharded_model_state(model), str(Path(args.init)))
        optimizer.reload_model_params()
    stream = StageDataStream(cfg, parallel_state.get_data_parallel_rank(),
                             parallel_state.get_data_parallel_world_size())

    losses = []
    optimizer.zero_grad()
    losses.append(forward_backward(model, stream.microbatches(0)[1]))
    if not cfg.optimizer.use_distributed_optimizer:
        _save_gradients(model, out / f"grads_{args.name}")
    optimizer.step()
    scheduler.step(increment=1)
    for step in range(1, cfg.train.steps):
        losses.append(train_step(model, optimizer, scheduler, stream.microbatches(step)[1]).loss)
    if torch.distributed.get_rank() == 0:
        (out / f"losses_{args.name}.json").write_text(json.dumps(losses))
    shutdown_runtime()


def compare(args):
    cfg = load_config(RECIPE, args.overrides)
    init_runtime(1, 1, seed=cfg.train.seed)
    model = build_model(cfg)[0]

    def load(directory):
        dist_checkpointing.load(model.sharded_state_dict(), str(directory))
        return {name: p.detach().clone() for name, p in model.named_parameters()}

    reference = load(args.reference)
    errors = {}
    for other_dir in args.others:
        other = load(other_dir)
        errors[Path(other_dir).name] = {
            name: float((other[name] - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
            for name, ref in reference.items()
        }
    Path(args.out).write_text(json.dumps(errors))
    shutdown_runtime()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["reference", "layout", "compare"])
    parser.add_argument("--name", default="ref")
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--pp", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--init")
    parser.add_argument("--reference")
    parser.add_argument("--others", nargs="+", default=[])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE")
    arguments = parser.parse_args()
    (compare if arguments.mode == "compare" else run)(arguments)
