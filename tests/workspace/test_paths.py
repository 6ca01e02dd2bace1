"""Where runs write: quick runs never into figures/, scratch never in the checkout, and the
check that tells whether a run changed the checkout."""

import subprocess
from pathlib import Path

import pytest

from xr0lab.workspace import paths


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A fake checkout as repo_root, with no output overrides set."""
    monkeypatch.setattr(paths, "repo_root", lambda: tmp_path)
    for name in ("XR0LAB_FIGURES", "XR0LAB_DATA", "XR0LAB_SCRATCH", "CI", "XR0LAB_QUICK"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_full_runs_write_figures_quick_runs_write_runs_quick(checkout, monkeypatch):
    assert paths.figures_dir() == checkout / "figures"
    monkeypatch.setenv("CI", "true")
    assert paths.figures_dir() == checkout / "runs" / "quick" / "figures"
    monkeypatch.setenv("XR0LAB_FIGURES", str(checkout / "elsewhere"))
    assert paths.figures_dir() == checkout / "elsewhere"
    assert paths.data_dir() == checkout / "data"   # quick runs read the committed results


def test_xr0lab_quick_decides_over_ci(checkout, monkeypatch):
    assert not paths.quick_mode()
    monkeypatch.setenv("CI", "true")
    assert paths.quick_mode()
    monkeypatch.setenv("XR0LAB_QUICK", "0")
    assert not paths.quick_mode()
    monkeypatch.setenv("XR0LAB_QUICK", "1")
    monkeypatch.delenv("CI")
    assert paths.quick_mode()


def test_train_mode_only_when_asked(monkeypatch):
    monkeypatch.delenv("XR0LAB_TRAIN", raising=False)
    assert not paths.train_mode()
    monkeypatch.setenv("XR0LAB_TRAIN", "1")
    assert paths.train_mode()


def test_scratch_is_never_in_the_checkout(checkout, monkeypatch, tmp_path_factory):
    fresh = paths.scratch_dir("sweep")
    assert fresh.is_dir() and checkout not in fresh.parents and fresh.name.startswith(
        "xr0lab-sweep-")
    fresh.rmdir()
    shared = tmp_path_factory.mktemp("shared")
    monkeypatch.setenv("XR0LAB_SCRATCH", str(shared))
    assert paths.scratch_dir("sweep") == shared / "sweep" == paths.scratch_dir("sweep")


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_changed_files_sees_rewrites_new_files_and_nothing_else(tmp_path):
    assert paths.changed_files(tmp_path) is None        # not a checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"committed")
    (tmp_path / "notes.txt").write_text("x")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    assert paths.changed_files(tmp_path, ("figures",)) == {}
    (tmp_path / "figures" / "a.png").write_bytes(b"quick")
    first = paths.changed_files(tmp_path, ("figures",))
    assert list(first) == ["figures/a.png"] and first["figures/a.png"][0] == " M"
    (tmp_path / "figures" / "a.png").write_bytes(b"quick again")   # already dirty, rewritten
    (tmp_path / "figures" / "b.png").write_bytes(b"new")
    (tmp_path / "notes.txt").write_text("outside the pathspec")
    second = paths.changed_files(tmp_path, ("figures",))
    assert sorted(second) == ["figures/a.png", "figures/b.png"]
    assert second["figures/a.png"] != first["figures/a.png"] and second["figures/b.png"][0] == "??"
