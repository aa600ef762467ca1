"""The tile engine and what it computes with: networks, layers' statistics, losses, the optimiser,
regions, the pyramid, tiles and their passes, checkpoints, the Dask runner, seams, the patch start.
Imports hires.core (and hires.kernels) only.
"""
