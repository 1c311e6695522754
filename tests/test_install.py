"""The package as users install it: a wheel, installed non-editable, runs `adapt` and `lam train`.

The wheel is built from a copy of the sources (so the repository gets no build/ or egg-info) with
``--no-build-isolation`` (the setuptools and wheel of the [dev] extra: no download), installed with ``--no-deps
--target`` (the environment's installed dependencies are reused), and run from a directory
outside the repository with only the target on PYTHONPATH; ``hralign.__file__`` proves which copy
ran, so an editable install cannot hide a missing package.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from conftest import TINY_LAM_ARGS

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MPLBACKEND")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", **extra)
    return env


TOP_PACKAGES = ("hralign", "hralign_bench")  # the library and its benchmark experiments, one wheel


def source_packages(root: Path = ROOT) -> set[str]:
    """Dotted names of every directory under hralign/ and hralign_bench/ that holds Python files."""
    return {".".join(p.parent.relative_to(root).parts) for top in TOP_PACKAGES for p in (root / top).rglob("*.py")
            if "__pycache__" not in p.parts}


def wheel_packages(wheel: Path) -> set[str]:
    """Dotted names of the packages (directories with __init__.py) in a wheel."""
    names = zipfile.ZipFile(wheel).namelist()
    return {".".join(Path(n).parent.parts) for n in names if n.endswith("/__init__.py") or n == "hralign/__init__.py"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(wheel file, target directory with the wheel installed)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for top in TOP_PACKAGES:
        shutil.copytree(ROOT / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    # the installed setuptools/wheel ([dev] extra) build it offline; without them pip fetches them
    offline = importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel")
    build = ["--no-build-isolation"] if offline else []
    proc = subprocess.run([*pip, "wheel", "--no-deps", *build, str(src), "-w", str(tmp / "dist")],
                          env=_env(), capture_output=True, text=True, timeout=600, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = next((tmp / "dist").glob("hralign-*.whl"))
    target = tmp / "site"
    proc = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                          env=_env(), capture_output=True, text=True, timeout=600, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return wheel, target


def test_every_subpackage_is_in_the_wheel(installed):
    wheel, _ = installed
    missing = source_packages() - wheel_packages(wheel)
    assert not missing, f"directories with Python files but no __init__.py (left out of the wheel): {sorted(missing)}"


def test_source_packages_lists_directories_with_python_files(tmp_path):
    (tmp_path / "hralign" / "a" / "b").mkdir(parents=True)
    (tmp_path / "hralign" / "__init__.py").write_text("")
    (tmp_path / "hralign" / "a" / "b" / "m.py").write_text("")
    assert source_packages(tmp_path) == {"hralign", "hralign.a.b"}


def test_adapt_and_lam_train_run_from_the_installed_wheel(installed, tmp_path):
    _, target = installed
    work = tmp_path / "outside"  # not the repository: nothing can be imported from the working tree
    work.mkdir()
    env = _env(PYTHONPATH=str(target))
    where = subprocess.run([sys.executable, "-c", "import hralign; print(hralign.__file__)"], env=env, cwd=work,
                           capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve().is_relative_to(target.resolve()), where.stdout
    hralign_bin = target / "bin" / "hralign"  # the wheel's console script

    def run(*args: str) -> str:
        proc = subprocess.run([sys.executable, str(hralign_bin), *args], env=env, cwd=work, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, (args[:2], proc.stderr[-3000:])
        return proc.stdout

    run("pairs", "synth", "--out", "pairs.h5", "--num-tasks", "3", "--pairs-per-task", "3", "--frames", "8",
        "--image-size", "32")
    run("adapt", "--pairs", "pairs.h5", "--encoder", "r3m-resnet18", "--image-size", "32", "--frames", "2",
        "--batch-size", "2", "--steps", "2", "--device", "cpu", "--cache-dir", "cache", "--out", "adapt")
    assert (work / "adapt" / "adapter" / "adapter_model.safetensors").is_file()
    run("lam", "train", "--pairs", "pairs.h5", "--out", "lam", "--gap", "2", "--steps", "3", "--device", "cpu",
        *TINY_LAM_ARGS)
    assert (work / "lam" / "lam.json").is_file()


GLOBAL_STATE = textwrap.dedent("""
    import importlib, json, logging, pkgutil, sys, warnings
    # third-party libraries first: what they do at import is theirs, not ours
    import accelerate, click, faiss, h5py, matplotlib, matplotlib.figure, numpy, peft, PIL.Image, safetensors
    import sklearn, timm, torch, torchvision, tqdm, transformers
    def state():
        return {"backend": str(matplotlib.rcParams._get("backend")), "threads": torch.get_num_threads(),
                "dtype": str(torch.get_default_dtype()), "filters": repr(warnings.filters),
                "root_handlers": repr(logging.getLogger().handlers), "root_level": logging.getLogger().level,
                "grad": torch.is_grad_enabled(), "deterministic": torch.are_deterministic_algorithms_enabled()}
    before = state()
    import hralign
    skipped = []
    for m in pkgutil.walk_packages(hralign.__path__, "hralign."):
        try:
            importlib.import_module(m.name)
        except ImportError as e:  # optional extras ([sim]) that are not installed
            skipped.append(f"{m.name}: {e}")
    after = state()
    print(json.dumps({"changed": {k: (before[k], after[k]) for k in before if before[k] != after[k]},
                      "skipped": skipped}))
""")


def test_no_import_changes_a_global_setting(tmp_path):
    """Importing every hralign module leaves matplotlib's backend, torch threads/dtype/grad,
    warning filters and logging as they were."""
    import json

    proc = subprocess.run([sys.executable, "-c", GLOBAL_STATE], env=_env(PYTHONPATH=str(ROOT)), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["changed"] == {}, res
