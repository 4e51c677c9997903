"""Training-target assignment alone: detectron2's per-image loops against bikestate's batched ones.

One batch of ``--images`` images (8), each with ``--gt`` random part boxes (22), and the two
assignment steps of a Faster R-CNN training step, on the modules of the R50-FPN config:

* ``rpn``: ``RPN.label_and_sample_anchors`` (detectron2) against
  ``BatchedRPN.label_and_sample_anchors``, on the anchors of a 26x26 feature map at each of the
  five FPN levels (strides 4 to 64, anchor sizes 32 to 512, three aspect ratios): 2,028 anchors
  per level, 10,140 per image (``--grid``);
* ``roi_heads``: ``StateROIHeads.label_and_sample_proposals`` against
  ``BatchedStateROIHeads.label_and_sample_proposals``: ``--proposals`` (1,000) proposals per
  image, a fifth of them jittered copies of the ground-truth boxes (foreground to sample),
  ground truth appended, 512 sampled per image.

Images are 416x416 (the area of the 26x26 P4 grid); boxes are 16 px to half the image. Each
figure is the median of ``--repeats`` alternating runs after ``--warmup`` runs; on CUDA every run
ends with ``torch.cuda.synchronize()``, and the host synchronizations of one call are counted
(``torch.cuda.set_sync_debug_mode``; null on CPU).

    python benchmarks/bench_assignment.py                 # CPU, 8 images, 50 repeats
    python benchmarks/bench_assignment.py --device cuda
    python benchmarks/bench_assignment.py --quick         # smoke run (2 images, 2 repeats)

Prints a table and appends a record to ``benchmarks/results/assignment.jsonl``.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_speed import BATCHED_OPTS, R50_CONFIG, alternate, load_cfg  # noqa: E402
from benchmarks.common import RESULTS_DIR, at_least, count_cuda_syncs, report  # noqa: E402

IMAGE_SIZE = (416, 416)
LEVELS = (2, 3, 4, 5, 6)  # P2-P6


def random_targets(num_images, num_gt, device, seed=0):
    """Instances with ``gt_boxes`` (16 px to half the image), ``gt_classes``, ``gt_states``."""
    from detectron2.structures import Boxes, Instances

    height, width = IMAGE_SIZE
    g = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(num_images):
        wh = 16 + torch.rand(num_gt, 2, generator=g) * (torch.tensor([width, height]) / 2 - 16)
        xy = torch.rand(num_gt, 2, generator=g) * (torch.tensor([width, height]) - wh)
        inst = Instances(IMAGE_SIZE)
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        inst.gt_classes = torch.randint(0, 22, (num_gt,), generator=g)
        inst.gt_states = torch.randint(0, 4, (num_gt,), generator=g)
        targets.append(inst.to(device))
    return targets


def random_proposals(targets, num_proposals, seed=1):
    """``num_proposals`` per image: a fifth jittered ground-truth boxes, the rest random."""
    from detectron2.structures import Boxes, Instances

    height, width = IMAGE_SIZE
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in targets:
        gt = t.gt_boxes.tensor.cpu()
        copies = gt[torch.randint(0, len(gt), (num_proposals // 5,), generator=g)]
        wh = (copies[:, 2:] - copies[:, :2]).repeat(1, 2)
        copies = copies + (torch.rand(copies.shape, generator=g) - 0.5) * 0.3 * wh
        count = num_proposals - len(copies)
        wh = 8 + torch.rand(count, 2, generator=g) * (torch.tensor([width, height]) / 2 - 8)
        xy = torch.rand(count, 2, generator=g) * (torch.tensor([width, height]) - wh)
        boxes = torch.cat([copies, torch.cat([xy, xy + wh], dim=1)])
        logits = torch.randn(len(boxes), generator=g)
        out.append(Instances(IMAGE_SIZE, proposal_boxes=Boxes(boxes), objectness_logits=logits)
                   .to(t.gt_boxes.device))
    return out


def build_stages(device, grid, opts=()):
    """(RPN, ROI heads, anchors) of the R50-FPN config, with ``grid`` x ``grid`` feature maps."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.proposal_generator import build_proposal_generator
    from detectron2.modeling.roi_heads import build_roi_heads

    import bikestate  # noqa: F401  registers BatchedRPN and the ROI heads

    cfg = load_cfg(R50_CONFIG, device, IMAGE_SIZE, list(opts))
    shapes = {f"p{level}": ShapeSpec(channels=cfg.MODEL.FPN.OUT_CHANNELS, stride=2 ** level)
              for level in LEVELS}
    torch.manual_seed(0)
    rpn = build_proposal_generator(cfg, shapes).to(device).train()
    roi_heads = build_roi_heads(cfg, shapes).to(device).train()
    features = [torch.zeros(1, 1, grid, grid, device=device) for _ in LEVELS]
    return rpn, roi_heads, rpn.anchor_generator(features)


def measure(args):
    """One row per stage (median ms of each path, its runs, host syncs on CUDA) and the
    number of anchors per level."""
    from detectron2.utils.events import EventStorage

    cuda = args.device.startswith("cuda")
    rpn, heads, anchors = build_stages(args.device, args.grid)
    batched_rpn, batched_heads, _ = build_stages(args.device, args.grid, BATCHED_OPTS)
    targets = random_targets(args.images, args.gt, args.device)
    proposals = random_proposals(targets, args.proposals)
    stages = {
        "rpn": {"per_image": lambda: rpn.label_and_sample_anchors(anchors, targets),
                "batched": lambda: batched_rpn.label_and_sample_anchors(anchors, targets)},
        "roi_heads": {
            "per_image": lambda: heads.label_and_sample_proposals(proposals, targets),
            "batched": lambda: batched_heads.label_and_sample_proposals(proposals, targets)},
    }
    rows = []
    with EventStorage():  # the ROI heads log their sample counts
        for stage, fns in stages.items():
            times, runs = alternate(fns, args.repeats, args.warmup, args.device, stage)
            row = {"stage": stage, "per_image_ms": 1000 * times["per_image"],
                   "batched_ms": 1000 * times["batched"],
                   "speedup": times["per_image"] / times["batched"]}
            for who, fn in fns.items():
                row[f"{who}_syncs"] = count_cuda_syncs(fn)[1] if cuda else None
                row[f"{who}_runs_ms"] = [1000 * t for t in runs[who]]
            rows.append(row)
    # The same grid at every level: as many anchors at each.
    return rows, len(anchors[0])


def print_table(fig):
    from tabulate import tabulate

    print(f"\nTarget assignment, {fig['images']} images x {fig['gt_per_image']} boxes, "
          f"{fig['anchors_per_level']} anchors x {fig['levels']} levels, "
          f"{fig['proposals_per_image']} proposals, {fig['device']}")
    print(tabulate([[r["stage"], f"{r['per_image_ms']:.2f}", f"{r['batched_ms']:.2f}",
                     f"{r['speedup']:.2f}x", r["per_image_syncs"], r["batched_syncs"]]
                    for r in fig["rows"]],
                   headers=["stage", "per-image ms", "batched ms", "speed-up", "per-image syncs",
                            "batched syncs"]))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--images", type=at_least(1), default=8)
    parser.add_argument("--gt", type=at_least(1), default=22, help="ground-truth boxes per image")
    parser.add_argument("--grid", type=at_least(1), default=26,
                        help="feature map side at every level (26: 2,028 anchors per level)")
    parser.add_argument("--proposals", type=at_least(1), default=1000,
                        help="proposals per image")
    parser.add_argument("--repeats", type=at_least(1), default=50)
    parser.add_argument("--warmup", type=at_least(0), default=3)
    parser.add_argument("--threads", type=at_least(1), default=None, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 images, 2 repeats, no warm-up")
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda but no GPU is available")
    if args.quick:
        args.images, args.repeats, args.warmup = 2, 2, 0
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    rows, anchors_per_level = measure(args)
    figures = {
        "device": args.device,
        "images": args.images,
        "gt_per_image": args.gt,
        "levels": len(LEVELS),
        "anchors_per_level": anchors_per_level,
        "proposals_per_image": args.proposals,
        "image_size": list(IMAGE_SIZE),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "quick": bool(args.quick),
        "load_average_1min": os.getloadavg()[0],
        "rows": rows,
    }
    figures["wall_s"] = time.perf_counter() - start
    return report("assignment", figures, print_table, args)


if __name__ == "__main__":
    main()
