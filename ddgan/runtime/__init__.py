"""What a rank runs with: every transfer (comm), the process group, checkpoints, the run directory,
stop requests and NaN flags. Imports ddgan.core only."""
