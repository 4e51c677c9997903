"""Fixtures of the SynthBikes tests."""
import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "make_synthetic.py")


@pytest.fixture(scope="module")
def tool():
    """tools/make_synthetic.py as a module, to call its ``main(argv)``."""
    spec = importlib.util.spec_from_file_location("make_synthetic", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
