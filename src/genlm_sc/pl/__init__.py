"""Plotting: stored results to matplotlib Axes."""

__all__: list[str] = []
