"""The lock files and the installs they drive (README: Dependencies)."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
REFRESH = "refresh the locks as README's 'Dependencies' says"


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line):
            pins[canonicalize_name(m[1])] = m[2]
    return pins


def _declared() -> tuple[list[Requirement], list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = [Requirement(r) for r in project["dependencies"]]
    test = [Requirement(r) for r in project["optional-dependencies"]["test"]]
    return runtime, test


@pytest.mark.parametrize(
    ("lock", "which"), [("requirements.lock", "runtime"), ("requirements-test.lock", "runtime and test")]
)
def test_each_lock_pins_every_declared_dependency_within_its_range(lock: str, which: str) -> None:
    runtime, test = _declared()
    pins = _pins(lock)
    for req in runtime + (test if which != "runtime" else []):
        pinned = pins.get(canonicalize_name(req.name))
        assert pinned is not None, f"{lock} does not pin {req.name}: {REFRESH}"
        assert req.specifier.contains(pinned, prereleases=True), (
            f"{lock} pins {req.name}=={pinned}, outside pyproject's {req}: {REFRESH}"
        )


def test_the_runtime_lock_agrees_with_the_test_lock() -> None:
    runtime, test = _pins("requirements.lock"), _pins("requirements-test.lock")
    differ = {n: (v, test.get(n)) for n, v in runtime.items() if test.get(n) != v}
    assert not differ, f"requirements.lock and requirements-test.lock disagree: {differ}; {REFRESH}"
    assert "--hash=sha256:" in (ROOT / "requirements.lock").read_text(), "the Docker image checks hashes"


def test_the_installed_versions_are_the_locked_ones() -> None:
    """The suite runs on what the lock says: an install that drifted (a package upgraded by hand) fails."""
    drifted = {}
    for name, version in _pins("requirements-test.lock").items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            drifted[name] = f"locked {version}, installed {installed}"
    assert not drifted, f"reinstall with README's test command, or {REFRESH}: {drifted}"


def test_httpx_and_httpcore_stay_pinned_to_what_the_dispatcher_transport_was_tested_with() -> None:
    runtime, _ = _declared()
    for name in ("httpx", "httpcore"):
        req = next(r for r in runtime if r.name == name)
        assert any(s.operator == "<" for s in req.specifier), (
            f"pyproject.toml must cap {name}: webhooks/transport.py reaches into its internals "
            "(tests/webhooks/test_transport_contract.py says what to re-check before raising the cap)"
        )


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"Run the tests.*?```sh\n(.+?)\n```", readme, re.DOTALL)
    assert command is not None
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command[1] in ci, f".ci/run must run README's test command as written: {command[1]}"
    assert "-c requirements-test.lock" in command[1]
