"""Training: ``BikeStateTrainer`` (a detectron2 ``DefaultTrainer``), its hooks, solver and W&B
writer."""
from .distributed import process_group_teardown
from .hooks import (
    BestCheckpointHook,
    BikeStateEvalHook,
    EarlyStopHook,
    PlateauLRHook,
    RetainingPeriodicCheckpointer,
    WandbPredictionImagesHook,
    compute_validation_loss,
)
from .solver import WarmupReduceLROnPlateau, build_lr_scheduler, build_optimizer
from .rng import capture_rng_state, preserve_rng_state, restore_rng_state
from .train_loop import BikeStateTrainLoop, NonFiniteLossError
from .trainer import (
    BikeStateTrainer,
    create_ddp_model,
    log_device_info,
    prepare_training_config,
    set_cudnn_determinism,
)
from .wandb_writer import WANDB_KEYS, WandbWriter, resolve_wandb_mode

__all__ = [k for k in globals().keys() if not k.startswith("_")]
