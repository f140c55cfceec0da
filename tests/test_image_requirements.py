"""Every image's requirements resolve, from the package registry, for that image's Python and
platform: an image that could not be built fails here, not at `docker build` on a GPU host.

pip resolves each requirements file as it would inside the image (`--dry-run --ignore-installed
--only-binary=:all:` for CPython 3.12 on manylinux x86_64 up to glibc 2.39, Ubuntu 24.04's) against
PyPI only (`--isolated`: no local wheel folder or mirror of this machine takes part). The same check
rejects a pin the image's Python cannot install (diffusers 0.42.1 on Python 3.10).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INDEX_URL = os.environ.get("VHS_IMAGE_INDEX_URL", "https://pypi.org/simple")
GLIBC_MINOR = 39  # Ubuntu 24.04, the base of both NGC 25.11 images
# image -> (its requirements, its Python, packages that must not be in it)
IMAGES = {
    "deploy/Dockerfile": ("deploy/requirements-serving.txt", "3.12", ("diffusers", "transformers")),
    "deploy/Dockerfile.export": ("deploy/requirements-export.txt", "3.12", ()),
}


def platform_arguments(glibc_minor: int = GLIBC_MINOR) -> list[str]:
    """pip's --platform takes one tag each: every manylinux tag a glibc 2.<minor> x86_64 system runs."""
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(glibc_minor, 4, -1)]
    tags += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    return [argument for tag in tags for argument in ("--platform", tag)]


def resolve(requirements: Path, python_version: str) -> subprocess.CompletedProcess:
    """pip's resolution of `requirements` for CPython `python_version` on manylinux x86_64; the JSON
    report on stdout."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--isolated",
        "--index-url",
        INDEX_URL,
        "--dry-run",
        "--ignore-installed",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        *platform_arguments(),
        "--quiet",
        "--report",
        "-",
        "-r",
        str(requirements),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def resolved_versions(result: subprocess.CompletedProcess) -> dict[str, str]:
    report = json.loads(result.stdout)
    return {canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: Path) -> dict[str, str]:
    """name -> version of every `name==version` line (extras dropped)."""
    found = {}
    for line in requirements.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if match:
            found[canonical(match.group(1))] = match.group(3)
    return found


@pytest.fixture(scope="module")
def resolutions():
    """Both images resolved side by side (the time is the registry's)."""
    with ThreadPoolExecutor(len(IMAGES)) as pool:
        futures = {
            image: pool.submit(resolve, ROOT / requirements, python)
            for image, (requirements, python, _) in IMAGES.items()
        }
        return {image: future.result() for image, future in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("image", IMAGES)
def test_each_image_resolves_for_its_python_and_platform(resolutions, image):
    requirements, python, absent = IMAGES[image]
    result = resolutions[image]
    assert result.returncode == 0, (
        f"{image}: {requirements} does not install on Python {python}:\n{result.stderr}"
    )
    versions = resolved_versions(result)
    for name, version in pins(ROOT / requirements).items():
        assert versions.get(name) == version, (
            f"{image}: {name} resolved to {versions.get(name)}, pinned {version}"
        )
    assert not set(absent) & set(versions), f"{image} pulls in {set(absent) & set(versions)}"


@pytest.mark.parametrize("image", IMAGES)
def test_each_dockerfile_installs_its_requirements_on_the_python_it_is_checked_for(image):
    dockerfile = (ROOT / image).read_text()
    requirements, python, _ = IMAGES[image]
    assert f"pip install -r {requirements}" in dockerfile
    major, minor = python.split(".")
    assert f"sys.version_info[:2] == ({major}, {minor})" in dockerfile, "the build asserts its Python"
    assert "make " not in dockerfile.split("CMD")[-1] and "make " not in dockerfile.split("ENTRYPOINT")[-1]


def test_the_images_share_one_release_and_one_tensorrt():
    serving, export = ((ROOT / image).read_text() for image in IMAGES)
    release = re.search(r"ARG TRITON_RELEASE=(\S+)", serving).group(1)
    assert re.search(r"ARG TENSORRT_RELEASE=(\S+)", export).group(1) == release
    tensorrt = {re.search(r"ARG TENSORRT_VERSION=(\S+)", text).group(1) for text in (serving, export)}
    assert len(tensorrt) == 1, f"the serving and export images pin different TensorRT versions: {tensorrt}"


def test_image_pins_agree_with_pyproject():
    import tomllib  # Python 3.11+, as the project

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *sum(project.get("optional-dependencies", {}).values(), [])]
    pyproject = {}
    for requirement in declared:
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;,]+)$", requirement.strip())
        if match:
            pyproject[canonical(match.group(1))] = match.group(3)
    for _, (requirements, _, _) in IMAGES.items():
        for name, version in pins(ROOT / requirements).items():
            if name in pyproject:
                assert pyproject[name] == version, (
                    f"{requirements}: {name}=={version}, pyproject {pyproject[name]}"
                )


@pytest.mark.slow
def test_the_check_rejects_what_an_images_python_cannot_install(tmp_path):
    """The check can fail: diffusers 0.42.1 needs Python >= 3.11, so Python 3.10 (NGC Triton 24.10's)
    cannot have it."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("diffusers==0.42.1\n")
    result = resolve(requirements, "3.10")
    assert result.returncode != 0
    assert "diffusers" in result.stderr and "0.42.1" in result.stderr
    assert resolve(requirements, "3.12").returncode == 0
