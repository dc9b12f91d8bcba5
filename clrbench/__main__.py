"""Enables ``python -m clrbench`` (the form ``torchrun -m clrbench`` uses)."""

from clrbench.cli import main

main()
