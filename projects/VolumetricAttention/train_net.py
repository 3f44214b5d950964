#!/usr/bin/env python
"""Train and evaluate Volumetric Attention models with detectron2.

    python projects/VolumetricAttention/train_net.py --config-file CONFIG [--num-gpus N] [--resume] [--threads T] \
        [KEY VALUE ...] [--opts KEY VALUE ...]
    python projects/VolumetricAttention/train_net.py --config-file CONFIG --eval-only MODEL.WEIGHTS model_final.pth

``--num-gpus N`` starts N processes (NCCL on GPUs; gloo on the CPU when CUDA is absent); a process's one-line error
ends the run with that line. A config typo, ``--eval-only`` weights that do not match the config's model exactly, an
empty or unprepared dataset, or a cache prepared with other ``INPUT.CT`` settings stop with a one-line error before
the model is built.
"""
# first: the package quiets the known third-party notices that importing detectron2 prints
from volumetric_attention.data.dataset_checks import DatasetCheckError, check_datasets, datasets_of
from volumetric_attention.engine import CheckpointLoadError, VACheckpointer, VATrainer, launch
from volumetric_attention.utils import cli
from volumetric_attention.utils.overrides import add_override_arguments
from volumetric_attention.utils.tensor_checkpoint import load_weights_strict
from volumetric_attention.utils.threads import add_threads_argument, set_threads

from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results


def setup(args):
    cfg = cli.load_config(args.config_file, args.opts)  # a config typo: one line
    cli.default_setup(cfg, args)  # detectron2's loggers and log.txt, and the project's own logger
    set_threads(args.threads)
    return cfg


def main(args):
    # in every process (launch() starts fresh ones); the loggers are set up by default_setup, with log.txt
    cli.setup_cli(args.threads, log_threads=False, log=False)
    cfg = setup(args)
    try:  # before the model is built: otherwise detectron2's traceback, or a data-loader worker's
        check_datasets(cfg, datasets_of(cfg, train=not args.eval_only))
    except DatasetCheckError as e:
        raise SystemExit(f"error: {e}") from None
    if args.eval_only:
        model = VATrainer.build_model(cfg)
        checkpointer = VACheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        resume = args.resume and checkpointer.has_checkpoint()
        weights = checkpointer.get_checkpoint_file() if resume else cfg.MODEL.WEIGHTS
        try:  # strict: detectron2 would skip mismatched weights with a warning and evaluate a half-loaded model
            load_weights_strict(model, weights)
        except (ValueError, OSError, RuntimeError) as e:
            raise SystemExit(f"error: {cli.one_line(e)}") from e
        res = VATrainer.test(cfg, model)
        verify_results(cfg, res)
        return res
    trainer = VATrainer(cfg)
    try:
        trainer.resume_or_load(resume=args.resume)
    except CheckpointLoadError as e:  # the same one line as --eval-only gives for MODEL.WEIGHTS or the last checkpoint
        raise SystemExit(f"error: {cli.one_line(e)}") from e
    return trainer.train()


def get_parser():
    parser = default_argument_parser()
    add_threads_argument(parser)
    add_override_arguments(parser, positional=False)  # detectron2's parser has the positional KEY VALUE pairs
    return parser


if __name__ == "__main__":
    args = get_parser().parse_args()
    args.opts = cli.overrides_from_args(args)
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
