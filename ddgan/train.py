"""Train a decentralized GAN: one rank per client (or per group of clients), launched by torchrun.

    torchrun --standalone --nproc_per_node 5 -m ddgan.train --config configs/default.yaml
    torchrun --standalone --nproc_per_node 2 -m ddgan.train --config configs/default.yaml \\
        partition.clients=2 partition.scheme=classes partition.classes='[[0,1,2,3,4],[5,6,7,8,9]]'
    python -m ddgan.train --config configs/centralized.yaml      # one client: no torchrun needed

The run needs ``partition.clients`` ranks, or ``train.client_ranks`` where that hosts the clients (gossip
and fedavg: nodes) on fewer, one more with ``train.generator_rank=dedicated``: ``python -m ddgan.layout
--config ...`` prints it.
``algo.name`` chooses the trainer through the registry in :mod:`ddgan.core.algorithms`. Errors in the
config or the data print one line and exit 2 before any work; a failed peer, a timeout or a NaN
loss exit 1 with the step and the rank.
"""
from __future__ import annotations

import importlib
import os
import sys
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING, Callable

from ddgan.cli import config_parser, parse_args
from ddgan.core.algorithms import ALGORITHMS
from ddgan.core.config import Config
from ddgan.core.errors import ConfigError, UserError
from ddgan.core.layout import world_size
from ddgan.runtime.preemption import listen

if TYPE_CHECKING:
    from ddgan.runtime.comm import Comm
    from ddgan.runtime.distributed import Dist


# Algorithm.trainer -> the module whose ``train(cfg, ctx, comm)`` runs it.
TRAINERS = {"forgiver": "ddgan.forgiver.trainer", "gossip": "ddgan.nodes.gossip", "fedavg": "ddgan.nodes.fedavg"}


def trainer_for(cfg: Config) -> Callable[[Config, "Dist", "Comm"], dict]:
    return importlib.import_module(TRAINERS[ALGORITHMS[cfg.algo.name].trainer]).train


def check_world(cfg: Config, world: int) -> None:
    need, clients = world_size(cfg), cfg.partition.clients
    if need == world:
        return
    hosts = cfg.train.client_ranks or clients
    dedicated = need - hosts
    what = f"{clients} on train.client_ranks = {hosts}" if cfg.train.client_ranks else f"{clients}"
    if dedicated:
        what += f" with a dedicated generator rank needs {need} ranks,"
    fix = f"train.client_ranks={world - dedicated}" if cfg.train.client_ranks else f"partition.clients={world - dedicated}"
    hint = f" (or train.client_ranks={world - dedicated} to host the {clients} clients on fewer ranks)" \
        if not cfg.train.client_ranks and 0 < world - dedicated < clients else ""
    raise ConfigError(f"partition.clients = {what} but {world} rank(s) were started (WORLD_SIZE={world}); "
                      f"launch with torchrun --nproc_per_node {need} or set {fix}{hint}")


def run(cfg: Config) -> dict:
    """Train with the process group described by the environment; returns the last metrics record."""
    from ddgan.runtime.comm import Comm
    from ddgan.runtime.distributed import process_group
    from ddgan.runtime.watchdog import Watchdog, watching

    check_world(cfg, int(os.environ.get("WORLD_SIZE", 1)))
    with process_group(cfg) as ctx:
        comm = Comm(ctx.rank, ctx.world, cfg.comm.timeout_s, device=ctx.comm_device)
        with Watchdog(comm, cfg.comm.timeout_s) if watching(cfg, ctx.backend, ctx.world) else nullcontext():
            return trainer_for(cfg)(cfg, ctx, comm)


def main(argv: list[str] | None = None) -> int:
    listen()
    parser = config_parser("ddgan.train", __doc__.split("\n\n")[0])
    rank = int(os.environ.get("RANK", 0))
    code, said_by_rank_0 = 0, False
    try:
        args = parse_args("ddgan.train", "", argv, parser)
        run(args.config)
    except UserError as exc:
        # An error every rank meets alike is said once; a rank's own view carries its rank.
        if not exc.same_on_all_ranks:
            print(f"error: [rank {rank}] {exc}" if "RANK" in os.environ else f"error: {exc}", file=sys.stderr, flush=True)
        elif rank == 0:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        code, said_by_rank_0 = exc.exit_code, exc.same_on_all_ranks
    if said_by_rank_0 and rank != 0:
        # torchrun stops every worker as soon as one exits with an error: let rank 0 say it first.
        time.sleep(2.0)
    if "RANK" in os.environ:
        # Leave now, the group destroyed and every file closed or flushed: gloo's native teardown
        # at interpreter exit can abort (SIGABRT) while peers' connections close, after a failure
        # and, rarely, after a finished 5-rank run too; either would mask this exit code. A
        # one-rank group launched the same way (a TCP store) aborted so too, once in a CI run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
