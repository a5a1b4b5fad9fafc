"""The one-generator trainer (f2u, f2a, f2u_balanced, mean / MD-GAN, gman, centralized): where G and
the clients sit (layout), the exchange modes (exchange: feedback and params; secure; robust), F2A's
temperature, dishonest clients for tests and benchmarks, and the one-process reference it is
tested against. Never imports ddgan.nodes."""
