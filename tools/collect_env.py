#!/usr/bin/env python
"""Print Python, torch, detectron2 (and its source), W&B facts for a bug report."""
from bikestate.collect_env import main

if __name__ == "__main__":
    main()
