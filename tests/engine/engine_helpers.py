"""Constants and helpers of the training tests, importable by name from the test modules
(``conftest`` is not: pytest loads one ``conftest`` module per folder under the same name)."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
SMALL_CONFIG = os.path.join(REPO, "configs", "bike_small_cpu.yaml")


def tiny_opts(synth_dir):
    """Config options shrinking ``configs/bike_small_cpu.yaml`` to seconds per run."""
    return [
        "BIKESTATE.DATA.SYNTH_NUM_TRAIN", "8",
        "BIKESTATE.DATA.SYNTH_NUM_VAL", "4",
        "BIKESTATE.DATA.SYNTH_NUM_TEST", "0",
        "BIKESTATE.DATA.SYNTH_IMAGE_SIZE", "[256, 192]",
        "BIKESTATE.DATA.SYNTH_CACHE_DIR", str(synth_dir),
        "INPUT.MIN_SIZE_TRAIN", "(128,)",
        "INPUT.MAX_SIZE_TRAIN", "192",
        "INPUT.MIN_SIZE_TEST", "128",
        "INPUT.MAX_SIZE_TEST", "192",
        "INPUT.COLOR_JITTER.ENABLED", "False",
        "MODEL.FPN.OUT_CHANNELS", "32",
        "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
        "MODEL.ROI_STATE_HEAD.HIDDEN_DIM", "32",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100",
        "MODEL.RPN.PRE_NMS_TOPK_TEST", "100",
        "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
        "TEST.DETECTIONS_PER_IMAGE", "30",
        "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.WARMUP_ITERS", "0",
        "SOLVER.MAX_EPOCHS", "0",
        "WANDB.MODE", "offline",
        "WANDB.NUM_VIS_IMAGES", "2",
    ]


def run_cli(*argv, env=None, timeout=600):
    """Run tools/train_net.py in a subprocess; return the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, TRAIN_NET, *map(str, argv)], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=REPO)
