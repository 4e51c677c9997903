"""bikestate's configs by name, as ``detectron2.model_zoo`` gives detectron2's.

The YAML files ship inside the package (``bikestate/configs/``; the repository's ``configs/``
points there), so an installed bikestate has them too::

    from bikestate import model_zoo

    cfg = model_zoo.get_config("bike_r50_fpn.yaml")       # detectron2 defaults + bikestate keys
    path = model_zoo.get_config_file("bike_small_cpu.yaml")

No weights are listed: the project has no pretrained bikestate model to download.
"""
import os

__all__ = ["CONFIG_DIR", "list_configs", "get_config_file", "get_config"]

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def list_configs():
    """Names of the shipped configs (the ``Base-*`` file that they inherit from excluded)."""
    return sorted(f for f in os.listdir(CONFIG_DIR)
                  if f.endswith(".yaml") and not f.startswith("Base-"))


def get_config_file(config_path):
    """Absolute path of a shipped config.

    Args:
        config_path (str): its name, e.g. ``"bike_r50_fpn.yaml"`` (``"configs/"`` in front is
            accepted, as in the repository).
    Raises:
        RuntimeError: no such config (the message lists the names there are).
    """
    name = config_path[len("configs/"):] if config_path.startswith("configs/") else config_path
    path = os.path.join(CONFIG_DIR, name)
    if not os.path.isfile(path):
        raise RuntimeError(f"{config_path} is not a bikestate config; there are "
                           f"{', '.join(list_configs())}")
    return path


def get_config(config_path):
    """A detectron2 config with the bikestate keys, merged from a shipped config."""
    from detectron2.config import get_cfg

    from .config import add_bikestate_config

    cfg = add_bikestate_config(get_cfg())
    cfg.merge_from_file(get_config_file(config_path))
    return cfg
