from setuptools import find_packages, setup

setup(
    name="volumetric_attention",
    version="0.1.0",
    description="Volumetric Attention (VA) for 3D medical image segmentation and detection, as a detectron2 project",
    package_dir={"": "projects/VolumetricAttention"},
    packages=find_packages(where="projects/VolumetricAttention",
                           include=["volumetric_attention", "volumetric_attention.*"]),
    python_requires=">=3.9",
    # torch/torchvision and detectron2 are installed by setup.sh (detectron2 is not on PyPI)
    install_requires=[
        "fvcore>=0.1.5,<0.1.6",
        "pycocotools>=2.0.2",
        "SimpleITK>=2.3",
        "opencv-python-headless>=4.8",
        "numpy>=1.24",
        "scipy>=1.10",
        "tqdm>4.29.0",
        "matplotlib>=3.6",
    ],
)
