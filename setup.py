"""Installable package; also the `--setup_file` that Dataflow workers install.

Workers only run `pipelines/` (TF-free), so the base requirements stay light; the trainer and
indexer need the `train` extra (TensorFlow, Annoy, Matplotlib).
"""

from setuptools import find_packages, setup

TRAIN = ["keras==3.15.1", "annoy==1.17.3", "absl-py>=2,<3", "matplotlib>=3.10,<3.11"]

setup(
    name="landmark-recognition",
    version="0.1.0",
    description="Landmark recognition at Google-Landmarks scale: Beam preprocessing, "
    "triplet-trained embeddings, Annoy retrieval.",
    packages=find_packages(include=["pipelines", "pipelines.*", "trainer", "trainer.*", "indexer", "indexer.*"]),
    python_requires=">=3.10",
    install_requires=[
        "apache-beam[gcp]==2.77.0",
        "tfrecord==1.14.6",
        "google-cloud-storage>=3.17,<4",
        "pillow>=12,<13",
        "requests>=2.32,<3",
        "certifi>=2024",  # the CA bundle of the libcurl fetch path (pipelines/sources/fetch.py)
        "pycurl>=7.45.3,<8",  # libcurl: the HTTP(S) client of pipelines/sources/fetch.py (wheels bundle libcurl)
        "numpy<2.3",
        "tqdm>=4.67,<5",
        "simplejpeg>=1.9,<2",
        "opencv-python-headless>=5,<6",
    ],
    # `train`: the CPU TensorFlow; `train-gpu`: the GPU build with its CUDA/cuDNN wheels (Linux x86_64).
    # `make venv` picks between requirements.lock and requirements-gpu.lock the same way (Makefile).
    extras_require={
        "train": ["tensorflow-cpu==2.21.0", *TRAIN],
        "train-gpu": ["tensorflow[and-cuda]==2.21.0", *TRAIN],
    },
)
