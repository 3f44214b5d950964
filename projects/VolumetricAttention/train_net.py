#!/usr/bin/env python
"""Train and evaluate Volumetric Attention models with detectron2.

    python projects/VolumetricAttention/train_net.py --config-file CONFIG [--num-gpus N] [--resume] [KEY VALUE ...]
    python projects/VolumetricAttention/train_net.py --config-file CONFIG --eval-only MODEL.WEIGHTS model_final.pth

``--num-gpus N`` starts N processes (NCCL on GPUs; gloo on the CPU when CUDA is absent).
A config typo, or ``--eval-only`` weights that do not match the config's model exactly, stop with a one-line error.
"""
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results

from volumetric_attention import get_va_cfg
from volumetric_attention.engine import CheckpointLoadError, VACheckpointer, VATrainer
from volumetric_attention.inference import load_weights_strict


def _one_line(e):
    return " ".join(str(e.args[0] if isinstance(e, KeyError) and e.args else e).split())


def setup(args):
    try:
        cfg = get_va_cfg(args.config_file, args.opts)
    except (AssertionError, KeyError, ValueError, OSError) as e:  # yacs: unknown key, wrong type; a missing file
        where = args.config_file + (" + command-line options" if args.opts else "")
        raise SystemExit(f"error: {where}: {_one_line(e)}") from e
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = VATrainer.build_model(cfg)
        checkpointer = VACheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        resume = args.resume and checkpointer.has_checkpoint()
        weights = checkpointer.get_checkpoint_file() if resume else cfg.MODEL.WEIGHTS
        try:  # strict: detectron2 would skip mismatched weights with a warning and evaluate a half-loaded model
            load_weights_strict(model, weights)
        except (ValueError, OSError, RuntimeError) as e:
            raise SystemExit(f"error: {_one_line(e)}") from e
        res = VATrainer.test(cfg, model)
        verify_results(cfg, res)
        return res
    trainer = VATrainer(cfg)
    try:
        trainer.resume_or_load(resume=args.resume)
    except CheckpointLoadError as e:  # the same one line as --eval-only gives for MODEL.WEIGHTS or the last checkpoint
        raise SystemExit(f"error: {_one_line(e)}") from e
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
