"""Library deprecation notices are dropped by message and emitting module, nothing else."""
import logging
import warnings

import torch

from bikestate.utils.library_warnings import silence_library_warnings


def _warnings_from(module_name, message, category):
    """The warnings a ``warnings.warn`` call made from module ``module_name`` shows."""
    code = compile("warnings.warn(message, category)", f"<{module_name}>", "exec")
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        silence_library_warnings()
        exec(code, {"__name__": module_name, "warnings": warnings, "message": message,
                    "category": category})
    return [str(w.message) for w in caught]


def test_torch_jit_script_notice_is_dropped_only_from_torch():
    message = "`torch.jit.script` is deprecated. Please switch to `torch.compile`."
    assert _warnings_from("torch.jit._script", message, FutureWarning) == []
    assert _warnings_from("bikestate.modeling", message, FutureWarning) == [message]
    other = "something else is deprecated"
    assert _warnings_from("torch.jit._script", other, FutureWarning) == [other]


def _add_one(x: torch.Tensor) -> torch.Tensor:
    return x + 1


def test_real_torch_jit_script_call_is_quiet():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_library_warnings()
        scripted = torch.jit.script(_add_one)
    assert scripted(torch.zeros(1)).item() == 1
    assert not [w for w in caught if "torch.jit.script" in str(w.message)]


def test_fx_tracing_log_notice_is_dropped_other_records_kept(caplog):
    silence_library_warnings()
    silence_library_warnings()  # idempotent: one filter
    logger = logging.getLogger("torch.fx._symbolic_trace")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="torch.fx._symbolic_trace"):
        logger.warning("is_fx_tracing will return true for both fx.symbolic_trace and export")
        logger.warning("a real problem")
    assert [r.getMessage() for r in caplog.records] == ["a real problem"]


def test_cuda_home_probe_notice_is_dropped_other_records_kept(caplog):
    silence_library_warnings()
    logger = logging.getLogger("torch.utils.cpp_extension")
    with caplog.at_level(logging.WARNING, logger="torch.utils.cpp_extension"):
        logger.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
        logger.warning("Error checking compiler version for %s", "c++")
    assert [r.getMessage() for r in caplog.records] == ["Error checking compiler version for c++"]
