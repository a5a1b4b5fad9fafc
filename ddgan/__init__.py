"""ddgan: train one GAN from data that never leaves its owners (F2U/F2A, gossip, baselines).

Module map (each layer imports only from itself and the layers above it in this list;
forgiver/ and nodes/ never import each other; tests/test_layers.py checks it):

ddgan/core/       the pure core (imports no other ddgan package)
    config.py        typed config sections, loading, overrides, errors; the choice lists (no torch)
    errors.py        the error types; seeds.py  every random stream; compat.py  the PyTorch seam
    models.py        DCGAN G and D for 8-64 px, D's normalisation; losses.py  bce / ls per sample
    aggregate.py     generator rules: f2u, f2a, f2u_balanced, mean, gman; F2A's discriminator loss
    batched.py       co-hosted discriminators on stacked storage; transfer.py  host to device, unblocking
    layout.py        which rank hosts which clients (nodes) and the generator, for every trainer
    algorithms.py    the registry users choose from by name (algo.name), and lambda's objective
    reference.py     docs/configuration.md, generated from config.py's docstrings
ddgan/data/       datasets.py by name; partition.py  non-iid shards; shard.py  a client's sampler
ddgan/runtime/    comm.py  every transfer; distributed.py  process group; checkpoint.py;
                  rundir.py  run directory, metrics, grids; preemption.py  stop requests; health.py;
                  watchdog.py  a stalled rank under NCCL; standin.py  a stand-in GPU for the tests
ddgan/roles.py    Client (shard, D_k) and GeneratorSide (G, lambda, noise); checkpoint state layout
ddgan/forgiver/   the one-generator trainer: trainer.py  the loop; exchange.py  feedback and params;
                  secure.py; robust.py; temperature.py  F2A's lambda; attacks.py  a dishonest client;
                  simulate.py  the one-process reference; layout.py  core.layout under its old name
ddgan/nodes/      per-node trainers: local_gan.py  a rank's nodes, each a G_k and D_k; gossip.py;
                  neighbours.py  neighbour selection; topology.py  graphs; fedavg.py
commands          train.py, sample.py, eval/, layout.py, partition.py, slurm.py; cli.py  their plumbing
"""

__version__ = "0.4.0"
