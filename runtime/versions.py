"""Installed versions of the direct dependencies (requirements.txt + requirements-dev.txt), for result records."""

from collections.abc import Callable
from importlib import metadata

# the direct dependencies by distribution name, in requirements order; OpenCV stands for whichever build is installed
PACKAGES = ("torch", "numpy", "scipy", "opencv-python-headless", "h5py", "tqdm", "matplotlib", "pytest", "ruff")
# the OpenCV distributions that provide cv2, the one requirements.txt names first
OPENCV_DISTRIBUTIONS = ("opencv-python-headless", "opencv-python", "opencv-contrib-python",
                        "opencv-contrib-python-headless")


def _lookup(version: Callable[[str], str], name: str) -> str | None:
    try:
        return version(name)
    except metadata.PackageNotFoundError:
        return None


def package_versions(version: Callable[[str], str] = metadata.version) -> dict[str, str | None]:
    """Distribution name -> installed version (None when absent) for each direct dependency.

    OpenCV is reported under the name of the distribution that is installed (the first of OPENCV_DISTRIBUTIONS
    found; opencv-python-headless when none is). `version` looks a distribution up the way
    importlib.metadata.version does (raising PackageNotFoundError when absent); tests pass a fake.
    """
    result: dict[str, str | None] = {}
    for name in PACKAGES:
        if name != OPENCV_DISTRIBUTIONS[0]:
            result[name] = _lookup(version, name)
            continue
        found = [(dist, v) for dist in OPENCV_DISTRIBUTIONS if (v := _lookup(version, dist)) is not None]
        dist, value = found[0] if found else (name, None)
        result[dist] = value
    return result
