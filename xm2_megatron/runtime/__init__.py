"""Device, process-group and RNG setup."""

from xm2_megatron.runtime.distributed import (
    LaunchEnv,
    Runtime,
    broadcast_from_rank0,
    detect_launch_env,
    init_runtime,
    shutdown_runtime,
    single_process_runtime,
)

__all__ = ["LaunchEnv", "Runtime", "broadcast_from_rank0", "detect_launch_env", "init_runtime", "shutdown_runtime",
           "single_process_runtime"]
