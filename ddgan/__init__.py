"""ddgan: train one GAN from data that never leaves its owners (F2U/F2A, gossip, baselines).

Module map:

rules (pure functions, no communication)
    aggregate.py    generator rules: f2u, f2a, f2u_balanced, mean, gman; F2A's discriminator loss
    losses.py       bce / ls losses per sample, and the mixture loss of F2A's aggregate
    select.py       gossip neighbour selection (info gain, uniform, none)
    algorithms.py   the registry users choose from by name (algo.name), and lambda's objective
roles (stateful objects, no communication)
    models.py       DCGAN G and D for 8-64 px, D's normalisation (model.d_norm)
    roles.py        Client (shard, D_k) and GeneratorSide (G, lambda, noise); checkpoint state layout
    shard.py        a client's private shard and its resumable sampler
    datasets.py     datasets by name; partition.py  non-iid shards; topology.py  gossip graphs
comm (everything that crosses the wire)
    comm.py         Comm: every collective and point-to-point transfer, timed, counted, with timeouts
    distributed.py  process-group setup and teardown; layout.py  which rank holds G and each client
    verdicts.py     the feedback and params exchanges of a generator round
    temperature.py  F2A's lambda on the discriminator-side objective
    attacks.py      a dishonest client, for tests and benchmarks
trainers
    train.py        the entry point: config, world-size check, the trainer table
    forgiver.py     one G and K discriminators (f2u, f2a, f2u_balanced, mean, gman, centralized)
    simulate.py     the same algorithm in one process: the reference the trainer is tested against
    nodes.py        per-node GANs shared by gossip.py (Kosmopoulos) and fedavg.py (FedGAN)
run upkeep
    config.py       typed config sections, loading, overrides, errors; errors.py  the error types
    checkpoint.py   atomic verified checkpoints and the end-of-step stop/checkpoint tail
    rundir.py       run directory, metrics, sample grids; health.py  NaN flags kept on the device
    preemption.py   stop requests (STOP file, SIGUSR1); slurm.py  SLURM environment -> torchrun
    seeds.py        every random stream from train.seed; cli.py  --config and dotted overrides
evaluation
    sample.py       draw images from a checkpoint
    eval/           domain classifier, sample metrics, SVM on D features, plots, report
"""

__version__ = "0.2.0"
