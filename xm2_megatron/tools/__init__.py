"""The command-line tools, one module per console script (``pyproject.toml``'s
``[project.scripts]``; ``tools/*.py`` in the repository are shims that call the same mains).

Policy level, like :mod:`xm2_megatron.cli`: each module parses arguments, calls the work in a
mechanism package (``config``, ``data``, ``model``, ``convert``) through ``run_cli`` and prints
the result. A module imports torch-heavy code only inside ``main``, after parsing, so
``--help`` is quick. Every ``main(argv=None) -> int`` returns its exit code.
"""
