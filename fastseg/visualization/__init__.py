"""Figures and pages a person reads (matplotlib through `Figure` objects, no display needed):
image grids, training curves, metric charts, the report's HTML."""
