"""The pre-commit hooks (.pre-commit-hooks.yaml), run by pre-commit itself with ``try-repo``: it clones a
repository of this checkout's files, installs normdsl into a hook environment, and runs the hooks on a
project's specs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ["pyproject.toml", "README.md", ".pre-commit-hooks.yaml", "normdsl", "grammar", "templates"]


def git(folder: Path, *args: str) -> None:
    identity = ["-c", "user.name=normdsl tests", "-c", "user.email=tests@normdsl.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", *identity, *args], cwd=folder, check=True, capture_output=True)


def test_the_hooks_are_normdsl_check_and_fmt_on_nd_files() -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert [(h["id"], h["entry"], h["files"], h["language"]) for h in hooks] == [
        ("normdsl-check", "normdsl check", r"\.nd$", "python"),
        ("normdsl-fmt", "normdsl fmt", r"\.nd$", "python"),
    ]


def test_pre_commit_try_repo_runs_both_hooks_on_a_project(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"  # a repository of this checkout's files, as pre-commit clones one
    for name in SHIPPED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, hooks / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            hooks.mkdir(exist_ok=True)
            shutil.copy(source, hooks / name)
    git(hooks, "init", "-q")
    git(hooks, "add", "-A")
    git(hooks, "commit", "-q", "-m", "normdsl")
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    spec = project / "model.nd"
    spec.write_text("input( 32,32,3 )\nconv64( k = 3 )  gn(16)  relu\n")
    (project / "notes.txt").write_text("not a spec (\n")
    git(project, "add", "-A")
    env = os.environ | {"PRE_COMMIT_HOME": str(tmp_path / "cache"), "PRE_COMMIT_COLOR": "never"}
    env.pop("VIRTUAL_ENV", None)

    def try_repo() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pre_commit", "try-repo", str(hooks), "--all-files"]
        return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600)

    first = try_repo()  # the format hook rewrites the spec: pre-commit fails the run, as with black
    assert first.returncode == 1, first.stdout + first.stderr
    assert "normdsl check" in first.stdout and "Passed" in first.stdout.split("normdsl fmt")[0]
    assert "files were modified by this hook" in first.stdout
    assert spec.read_text() == "input(32, 32, 3)\nconv64(k=3) gn(16) relu\n"
    git(project, "add", "-A")
    second = try_repo()
    assert second.returncode == 0, second.stdout + second.stderr
    spec.write_text("input(32, 32, 3)\nconv64(k=3) gn(12) relu\n")
    git(project, "add", "-A")
    third = try_repo()
    assert third.returncode == 1
    assert "model.nd:2:13: error: gn(12)" in third.stdout and "cannot be split into 12 groups" in third.stdout
