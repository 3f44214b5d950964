"""Known third-party warnings and log records that every run prints and no user can act on, and the filters that
hide exactly those.

Importing this module needs only the standard library, so the package can use :func:`quiet_import_noise` around its
own imports.
"""
import contextlib
import logging
import warnings

__all__ = ["KNOWN_WARNINGS", "KNOWN_LOG_RECORDS", "quiet_third_party_warnings", "quiet_import_noise"]

# Third-party warnings every run prints and no user can act on: (category, message regex, module regex).
KNOWN_WARNINGS = (
    # fvcore scripts its losses with torch.jit.script when detectron2 imports it
    (FutureWarning, r"`torch\.jit\.script` is deprecated", r"torch\."),
    # detectron2's anchor generator calls torch.meshgrid without indexing=
    (UserWarning, r"torch\.meshgrid: in an upcoming release", r"torch\."),
    # detectron2 resizes masks through PIL and hands the read-only result to torch.from_numpy
    (UserWarning, r"The given NumPy array is not writable", r"detectron2\.data\.detection_utils"),
)
# Third-party log records of the same kind: logger name -> start of the message.
KNOWN_LOG_RECORDS = {
    # torch finds no CUDA runtime on a CPU machine with a CUDA toolkit installed
    "torch.utils.cpp_extension": "No CUDA runtime is found",
    # detectron2's ROIPooler asks torch.fx whether it is tracing
    "torch.fx._symbolic_trace": "is_fx_tracing will return true",
}


class _DropRecords(logging.Filter):
    def __init__(self, prefix):
        super().__init__()
        self.prefix = prefix

    def filter(self, record):
        return not str(record.msg).startswith(self.prefix)


_installed_log_filters = {}


def _add_log_filters():
    added = []
    for name, prefix in KNOWN_LOG_RECORDS.items():
        if name not in _installed_log_filters:
            f = _DropRecords(prefix)
            logging.getLogger(name).addFilter(f)
            added.append((name, f))
    return added


def quiet_third_party_warnings():
    """Hide :data:`KNOWN_WARNINGS` and :data:`KNOWN_LOG_RECORDS` for the rest of the process (CLIs only).

    Each filter matches one message of one library; every other warning, the project's own included, still shows.
    """
    for category, message, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, f in _add_log_filters():
        _installed_log_filters[name] = f


@contextlib.contextmanager
def quiet_import_noise():
    """Hide the known third-party warnings printed while importing detectron2 and fvcore, for the block only."""
    added = _add_log_filters()
    try:
        with warnings.catch_warnings():
            for category, message, module in KNOWN_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category, module=module)
            yield
    finally:
        for name, f in added:
            logging.getLogger(name).removeFilter(f)
