"""Known third-party noise: quiet in the tools and on importing the package; every other warning still shows."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_known_third_party_noise_is_quiet_and_the_rest_is_not():
    """In a fresh process: the CLI filters drop exactly the known messages, by library and message."""
    script = textwrap.dedent("""
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
    assert out.returncode == 0, out.stderr
    for quiet in ("torch.meshgrid: in an upcoming release, it", "torch.jit.script", "not writable", "is_fx_tracing",
                  "No CUDA runtime"):
        assert quiet not in out.stderr
    for shown in ("(from the project)", "some other torch warning", "another cpp_extension message"):
        assert shown in out.stderr


def test_importing_the_package_prints_no_known_notice():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "projects" / "VolumetricAttention"), PYTHONWARNINGS="")
    out = subprocess.run([sys.executable, "-c", "import volumetric_attention"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch.jit.script" not in out.stderr
