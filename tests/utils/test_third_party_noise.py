"""Known third-party noise: quiet in the tools and on importing the package; every other warning still shows."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# between what importing the package printed and what the filters let through
IMPORTED = "-- volumetric_attention imported --"


@pytest.fixture(scope="module")
def fresh_process():
    """(exit status, what it printed to stderr while importing the package, all of its stderr) of one fresh process
    that imports the package and then applies the CLI filters to warnings and log records, known and unknown."""
    script = textwrap.dedent(f"""
        import sys
        import volumetric_attention
        print({IMPORTED!r}, file=sys.stderr, flush=True)
        import logging, warnings
        from volumetric_attention.utils.third_party_noise import quiet_third_party_warnings
        quiet_third_party_warnings()
        def warn(message, category, module):
            warnings.warn_explicit(message, category, module.replace(".", "/") + ".py", 1, module=module)
        warn("torch.meshgrid: in an upcoming release, it will be required", UserWarning, "torch.functional")
        warn("`torch.jit.script` is deprecated. Please switch to `torch.compile`", FutureWarning, "torch.jit._script")
        warn("The given NumPy array is not writable", UserWarning, "detectron2.data.detection_utils")
        warn("torch.meshgrid: in an upcoming release (from the project)", UserWarning, "volumetric_attention.x")
        warn("some other torch warning", UserWarning, "torch.functional")
        logging.getLogger("torch.fx._symbolic_trace").warning("is_fx_tracing will return true for both")
        logging.getLogger("torch.utils.cpp_extension").warning("No CUDA runtime is found, using CUDA_HOME='%s'", "x")
        logging.getLogger("torch.utils.cpp_extension").warning("another cpp_extension message")
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "projects" / "VolumetricAttention"), PYTHONWARNINGS="")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    on_import = out.stderr.partition(IMPORTED + "\n")[0]
    return out.returncode, on_import, out.stderr


def test_known_third_party_noise_is_quiet_and_the_rest_is_not(fresh_process):
    """In a fresh process: the CLI filters drop exactly the known messages, by library and message."""
    returncode, _, stderr = fresh_process  # all of it: the import's part included
    assert returncode == 0, stderr
    for quiet in ("torch.meshgrid: in an upcoming release, it", "torch.jit.script", "not writable", "is_fx_tracing",
                  "No CUDA runtime"):
        assert quiet not in stderr
    for shown in ("(from the project)", "some other torch warning", "another cpp_extension message"):
        assert shown in stderr


def test_importing_the_package_prints_no_known_notice(fresh_process):
    returncode, on_import, stderr = fresh_process
    assert returncode == 0, stderr
    assert IMPORTED in stderr  # the import ended before the filters' part began
    assert "torch.jit.script" not in on_import
