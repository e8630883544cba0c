"""The quickstart: the paper's pipeline in miniature on one CPU (``python -m
xm2_megatron.quickstart``; docs/quickstart.md). ``pipeline`` runs it, ``heldout`` measures the
held-out loss per source, ``summary`` prints the figures."""

from xm2_megatron.quickstart.pipeline import Pipeline, main, schedule_overrides

__all__ = ["Pipeline", "main", "schedule_overrides"]
