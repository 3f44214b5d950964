#!/usr/bin/env python
"""Install the real upstream detectron2 (pure Python) into the running interpreter, without GitHub.

PyPI has no ``detectron2``. ``sal-detectron2==0.7.2`` is upstream detectron2 at commit a59f0563 repackaged as
one cp310 wheel. This script downloads that wheel, checks its sha256, takes its ``detectron2/`` folder only (not its
CPython-3.10 ``_C`` extension, not its stray top-level ``tools`` package), applies upstream's later numpy-2 fix
(``np.array(x, copy=False)`` -> ``np.asarray(x)``, upstream commit 70f45430), and installs it as a local wheel named
``detectron2`` that carries upstream's own dependency list.

Without ``_C`` detectron2's ROIAlign/NMS go through torchvision; deformable convolution in this project uses
``torchvision.ops.deform_conv2d``. Run by ``setup.sh``; does nothing if ``import detectron2`` already works.
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "sal_detectron2-0.7.2-cp310-none-any.whl"
SHA256 = "491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561"
# upstream detectron2 setup.py install_requires, at the packaged commit
UPSTREAM_REQUIRES = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "omegaconf>=2.1,<2.4",
    "hydra-core>=1.1",
    "black",
    "packaging",
]
NUMPY2_FIX = re.compile(r"np\.array\(([^()]*(?:\([^()]*\))?[^()]*?),\s*copy=(?:False|copy)(,[^()]*)?\)")
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "detectron2"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_wheel():
    CACHE.mkdir(parents=True, exist_ok=True)
    wheel = CACHE / WHEEL
    if not wheel.exists() or sha256(wheel) != SHA256:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.10", "-d", str(CACHE), "sal-detectron2==0.7.2"],
            check=True,
        )
    digest = sha256(wheel)
    if digest != SHA256:
        wheel.unlink()
        sys.exit(f"error: {wheel}: sha256 {digest} does not match the expected {SHA256}; refusing to install it")
    return wheel


def build_source_tree(wheel, root):
    pkg = root / "detectron2"
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if not name.startswith("detectron2/") or name.endswith(".so") or name.endswith("/"):
                continue
            out = root / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(zf.read(name))
    patched = []
    for py in pkg.rglob("*.py"):
        text = py.read_text()
        new = NUMPY2_FIX.sub(r"np.asarray(\1\2)", text)
        if new != text:
            py.write_text(new)
            patched.append(str(py.relative_to(root)))
    version = re.search(r'__version__\s*=\s*"([^"]+)"', (pkg / "__init__.py").read_text()).group(1)
    (root / "setup.py").write_text(
        "from setuptools import setup, find_packages\n"
        f"setup(name='detectron2', version={version!r}, "
        f"packages=find_packages(include=['detectron2', 'detectron2.*']),\n"
        "      include_package_data=True, package_data={'': ['*.yaml', '*.json', '*.txt', '**/*.yaml', '**/*.py']},\n"
        f"      python_requires='>=3.8', install_requires={UPSTREAM_REQUIRES!r})\n"
    )
    return version, patched


def main():
    try:
        import detectron2  # noqa: F401

        print(f"detectron2 already importable from {os.path.dirname(detectron2.__file__)}; leaving it alone")
        return
    except ImportError:
        pass
    wheel = fetch_wheel()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        version, patched = build_source_tree(wheel, root)
        print(f"detectron2 {version} from {wheel.name} (sha256 ok); numpy-2 fix applied to: "
              f"{', '.join(patched) or 'none'}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", str(root)], check=True)
    shutil.rmtree(CACHE / "build", ignore_errors=True)


if __name__ == "__main__":
    main()
