"""What the distribution ships: py.typed, the metadata and extras, an sdist that builds its wheel without the
repository around it, and the error that names the extra when Lightning is missing."""

import importlib.resources
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FILES = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "torch_landscape").rglob("*.py"))
#: What a working copy holds besides the source: never part of a build.
NOT_SOURCE = (".git", ".venv*", "runs", "lightning_logs", "__pycache__", "*.egg-info", "build", "dist", ".*cache")


def test_py_typed_is_inside_the_installed_package():
    marker = importlib.resources.files("torch_landscape") / "py.typed"
    assert marker.is_file()
    assert marker.read_text() == ""  # complete annotations: "partial\n" would make checkers look for stubs too


def _build(hook: str, source: Path, out: Path) -> Path:
    """Run setuptools' PEP 517 ``hook`` in ``source`` (as pip and build do, without their isolated env)."""
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The sdist of a copy of this working tree, and the wheel built from the unpacked sdist alone."""
    tmp = tmp_path_factory.mktemp("dist")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    sdist = _build("build_sdist", source, tmp)
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "unpacked", filter="data")
        sdist_names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    (unpacked,) = (tmp / "unpacked").iterdir()
    wheel = _build("build_wheel", unpacked, tmp / "wheel")
    return sdist_names, wheel


def test_the_sdist_ships_the_package_and_its_texts_but_no_tests(built):
    names, _ = built
    assert set(PACKAGE_FILES) <= set(names) and "torch_landscape/py.typed" in names
    assert {"LICENSE", "README.md", "pyproject.toml", "docs/theory.md", "examples/demo.py"} <= set(names)
    # Tests cannot run from the sdist (helpers, fixtures, Lightning set-ups): none is shipped, nor the
    # benchmarks, scripts, Makefile or pictures.
    shipped = [name for name in names if re.match(r"(tests|benchmarks|scripts)/|Makefile$|.*\.png$", name)]
    assert shipped == []


def test_the_wheel_carries_py_typed_the_metadata_and_the_extras(built):
    _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    assert "torch_landscape/py.typed" in names
    assert sorted(name for name in names if name.endswith(".py")) == PACKAGE_FILES
    assert metadata["Name"] == "torch-landscape" and metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Author"] == "torch_landscape developers"
    classifiers = metadata.get_all("Classifier")
    wanted = ["Typing :: Typed", "Topic :: Scientific/Engineering :: Artificial Intelligence"]
    assert set(wanted + ["Intended Audience :: Science/Research"]) <= set(classifiers)
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Issues"} <= urls.keys()
    requirements = metadata.get_all("Requires-Dist")

    def extra(name):
        return sorted(re.split(r"[<>=; ]", r)[0] for r in requirements if r.endswith(f'extra == "{name}"'))

    assert {"lightning", "tensorboard", "pandas"} <= set(metadata.get_all("Provides-Extra"))
    assert extra("lightning") == ["lightning", "matplotlib", "pytorch-lightning", "tensorboard"]
    assert extra("tensorboard") == ["matplotlib", "tensorboard"]  # the plain-loop path, no Lightning
    assert extra("pandas") == ["pandas"]
    base = sorted(re.split(r"[<>=; ]", r)[0] for r in requirements if "extra ==" not in r)
    assert base == ["numpy", "scipy", "torch"]  # pandas, TensorBoard and Lightning stay optional


def test_the_callbacks_without_lightning_name_the_extra():
    """Lightning absent (both namespaces blocked in a fresh interpreter): the core, the monitoring session and
    the writers import; the callbacks raise ModuleNotFoundError naming the extra to install."""
    code = (
        "import sys\n"
        "sys.modules['pytorch_lightning'] = sys.modules['lightning'] = None\n"
        "import torch_landscape, torch_landscape.monitoring, torch_landscape.writers\n"
        "try:\n"
        "    import torch_landscape.callbacks\n"
        "except ModuleNotFoundError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install 'torch-landscape[lightning]'" in result.stdout
    assert "MonitoringSession" in result.stdout  # and the way without Lightning


def test_the_long_description_links_only_what_pypi_can_show():
    """PyPI renders the long description (docs/pypi.md) without the repository: every link and image is an
    absolute URL or an anchor, it tells no one to run make, and its example is the README's, word for word."""
    pypi = (ROOT / "docs" / "pypi.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)", pypi)
    assert targets and [target for target in targets if not re.match(r"https?://|#", target)] == []
    assert "make " not in pypi
    example = re.compile(r"```python\n(.*?)```", re.S)
    assert example.search(pypi).group(1) == example.search((ROOT / "README.md").read_text()).group(1)
