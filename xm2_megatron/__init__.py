"""xm2-megatron: the Xmodel-2 training system on megatron-core."""

__version__ = "0.1.0"
