"""The per-node trainers, a G_k and D_k per node, one or more nodes per rank: gossip (Kosmopoulos)
on a graph (topology) with neighbour selection (neighbours), and FedAvg-GAN; local_gan holds what
both share. Never imports ddgan.forgiver."""
