"""xm2-megatron: the Xmodel-2 training system on megatron-core."""

import warnings

__version__ = "0.1.0"

# megatron-core announces each fallback it takes without Apex/Transformer Engine, and some
# of its own deprecated defaults, on every import; the trainer prints its backend once instead.
for _message in (
    r"(Transformer Engine and )?Apex (is|are) not installed",
    r"full scope is deprecated",
    r"`torch.distributed.(all_gather_into_tensor|reduce_scatter_tensor)` is deprecated",
    r"The .grad attribute of a Tensor that is not a leaf Tensor is being accessed",
):
    warnings.filterwarnings("ignore", message=_message)
