#!/usr/bin/env python
"""Train (or evaluate) a bikestate model: detectron2's ``train_net.py`` for bike parts and states.

Examples::

    # the main job: Faster R-CNN R50-FPN + state branch, data from .env / environment
    tools/train_net.py --config-file configs/bike_r50_fpn.yaml
    # small from-scratch model on SynthBikes, CPU
    tools/train_net.py --config-file configs/bike_small_cpu.yaml OUTPUT_DIR out/small
    # continue after an interruption (also after kill -9)
    tools/train_net.py --config-file configs/bike_r50_fpn.yaml --resume
    # 4 GPUs (NCCL); without GPUs, 4 CPU processes (GLOO)
    tools/train_net.py --config-file configs/bike_r50_fpn.yaml --num-gpus 4
    # evaluate a checkpoint
    tools/train_net.py --config-file configs/bike_r50_fpn.yaml --eval-only MODEL.WEIGHTS out/model_best.pth
"""
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bikestate  # noqa: E402,F401  first: quiets library deprecation notices
import detectron2.utils.comm as comm  # noqa: E402
from detectron2.engine import default_argument_parser, default_setup, launch  # noqa: E402
from detectron2.evaluation import verify_results  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402
from torch.multiprocessing import ProcessExitedException  # noqa: E402

from bikestate.engine.distributed import process_group_teardown  # noqa: E402
from bikestate.utils.errors import BikeStateError, ConfigError, cli_entry  # noqa: E402

logger = logging.getLogger("bikestate.train_net")


def setup(args):
    """Config: defaults + bikestate keys, the YAML file, the data environment (.env), the
    command-line options; datasets registered; machine-dependent values filled in."""
    from detectron2.data import DatasetCatalog

    from bikestate.checkpoint import check_weights
    from bikestate.config import get_user_config
    from bikestate.data.datasets import register_bike_datasets
    from bikestate.engine import prepare_training_config

    cfg = get_user_config(args.config_file, args.opts)
    registered = register_bike_datasets(cfg)
    unknown = [d for d in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST)
               if d not in DatasetCatalog.list()]
    if unknown:
        raise ConfigError(f"DATASETS names {', '.join(map(repr, unknown))}: not registered "
                          f"(the bike datasets are {', '.join(sorted(registered))})")
    notices = prepare_training_config(cfg)
    cfg.freeze()
    # Weights that cannot be used fail here, before default_setup writes into OUTPUT_DIR;
    # a resumed run loads its last checkpoint instead.
    if not (args.resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))):
        check_weights(cfg)
    default_setup(cfg, args)
    # bikestate's own loggers go to the console and OUTPUT_DIR/log.txt like detectron2's.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="bikestate")
    for notice in notices:
        logger.warning(notice)
    return cfg


def main(args):
    cfg = setup(args)
    from bikestate.checkpoint import TrainingCheckpointer
    from bikestate.engine import BikeStateTrainer

    if args.eval_only:
        model = BikeStateTrainer.build_model(cfg)
        TrainingCheckpointer(model, save_dir=cfg.OUTPUT_DIR,
                             allow_pickled=cfg.MODEL.ALLOW_PICKLED_WEIGHTS).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        res = BikeStateTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
            print(json.dumps(res, indent=2, sort_keys=True, default=float))
        return res

    trainer = BikeStateTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def _worker(args):
    """One training process. With several processes, each reports a user error as one line
    itself and exits with its code; the launcher then only sees the exit status."""
    import torch

    if args.num_gpus * args.num_machines > 1:
        if not torch.cuda.is_available():  # N CPU processes share the cores
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.num_gpus))
        with process_group_teardown():
            try:
                return main(args)
            except BikeStateError as e:
                if os.environ.get("BIKESTATE_DEBUG", "") not in ("", "0") or args.debug:
                    raise
                print(f"train_net.py: error (rank {comm.get_rank()}): "
                      f"{' '.join(str(e).split())}", file=sys.stderr)
                for line in e.details:
                    print(f"  {line}", file=sys.stderr)
                sys.exit(e.exit_code)
    return main(args)


@cli_entry
def cli():
    parser = default_argument_parser()
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    args = parser.parse_args()
    print("Command Line Args:", args)
    if args.num_gpus < 1:
        raise ConfigError(f"--num-gpus must be >= 1, not {args.num_gpus}")
    try:
        launch(
            _worker,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except ProcessExitedException as e:  # a worker already printed its one-line error
        return e.exit_code or 1
    return 0


if __name__ == "__main__":
    cli()
