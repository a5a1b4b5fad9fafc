"""The pure core, at the bottom: the config and its errors, random streams, the PyTorch seam, the
networks, the losses, the generator rules and the algorithm registry. Nothing here communicates or
touches a run directory, and nothing here imports another ddgan package."""
