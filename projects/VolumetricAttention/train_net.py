#!/usr/bin/env python
"""Train and evaluate Volumetric Attention models with detectron2.

    python projects/VolumetricAttention/train_net.py --config-file CONFIG [--num-gpus N] [--resume] [KEY VALUE ...]
    python projects/VolumetricAttention/train_net.py --config-file CONFIG --eval-only MODEL.WEIGHTS model_final.pth

``--num-gpus N`` starts N processes (NCCL on GPUs; gloo on the CPU when CUDA is absent).
"""
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results

from volumetric_attention import get_va_cfg
from volumetric_attention.engine import VATrainer


def setup(args):
    cfg = get_va_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = VATrainer.build_model(cfg)
        VATrainer.checkpointer_class(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = VATrainer.test(cfg, model)
        verify_results(cfg, res)
        return res
    trainer = VATrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
