"""The checkouts a benchmark measures: this one, and a baseline revision beside it.

The baseline is a ``git worktree add --detach`` of REV under the cache, reused while it
sits at REV's commit. Its gateway runs with this interpreter and its own folder first on
``sys.path`` (``cwd`` and ``PYTHONPATH``), unless REV's runtime dependencies are not met by
what is installed here: then it gets a virtualenv of its own in the cache, with REV
installed into it. Whatever its gateway needs (the environment variables it knows, an API
key in its own key store) is asked of its own code, in a subprocess with its ``cwd``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
BENCH_SCOPES = ("studies:write", "studies:read", "studies:delete")

# Run by the checkout's interpreter in its own folder: what it imports and what it knows.
PROBE = """
import importlib.util, json, sys
from pathlib import Path
import api, api.cli
from api.config import Settings
root = Path.cwd().resolve()
# The editable install of another tree answers for any api.* this tree lacks: look by file.
keys = (root / "api" / "auth" / "keys.py").is_file()
outside = sorted(name for name, module in sys.modules.items()
                 if name.split(".")[0] == "api" and getattr(module, "__file__", None)
                 and not Path(module.__file__).resolve().is_relative_to(root))
print(json.dumps({"api": api.__file__, "settings": sorted(Settings.model_fields),
                  "keys": keys, "outside": outside}))
"""

MAKE_KEY = """
import sys
from pathlib import Path
from api.auth.keys import open_key_store
store = open_key_store(Path(sys.argv[1]))
try:
    print(store.create("bench", sys.argv[2].split(","))[1])
finally:
    store.close()
"""


@dataclass(frozen=True)
class Checkout:
    """A tree of the project whose gateway is measured, and how it is run."""

    label: str  # "current" or "baseline"
    root: Path
    commit: str
    python: str
    install: str  # how its code is found: which interpreter, which folder
    api_module: str  # the api/__init__.py its interpreter imports (must lie under root)
    settings: tuple[str, ...]  # the Settings fields, i.e. BONEMETS_<FIELD> it reads
    has_key_store: bool

    def env(self, wanted: dict[str, str]) -> dict[str, str]:
        """The environment for its gateway: ``wanted`` BONEMETS_ variables it knows."""
        known = {f"BONEMETS_{name.upper()}" for name in self.settings}
        dropped = sorted(set(wanted) - known)
        if dropped:
            log.info("the %s checkout reads no %s: left out", self.label, ", ".join(dropped))
        # The caller's own BONEMETS_ settings reach both checkouts alike (where they read them).
        merged = {**os.environ, **wanted}
        return {**{key: value for key, value in merged.items()
                   if not key.startswith("BONEMETS_") or key in known},
                "PYTHONPATH": str(self.root)}

    def api_key(self, data_dir: Path) -> str | None:
        """A key for the benchmark's client made by this checkout's own key store code."""
        if not self.has_key_store:
            return None
        done = subprocess.run(  # noqa: S603 - our interpreter, our fixed script
            [self.python, "-c", MAKE_KEY, str(data_dir), ",".join(BENCH_SCOPES)],
            cwd=self.root, env=self.env({}), check=True, capture_output=True, text=True)
        return done.stdout.strip().splitlines()[-1]

    def describe(self) -> dict[str, str]:
        return {"commit": self.commit, "root": str(self.root), "install": self.install,
                "api_module": self.api_module}


def _git(*args: str, cwd: Path = PROJECT_ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True,  # noqa: S603, S607
                          capture_output=True, text=True)
    return done.stdout.strip()


def probe(label: str, root: Path, python: str, install: str) -> Checkout:
    """Ask the checkout's own code what it imports and reads; refuse one shadowed by another."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BONEMETS_")},
           "PYTHONPATH": str(root)}
    done = subprocess.run([python, "-c", PROBE], cwd=root, env=env,  # noqa: S603
                          check=True, capture_output=True, text=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    api_module = Path(found["api"]).resolve()
    if not api_module.is_relative_to(root.resolve()) or found["outside"]:
        raise RuntimeError(f"the {label} checkout at {root} imports api from {api_module} "
                           f"and {found['outside']} from elsewhere")
    commit = _git("rev-parse", "HEAD", cwd=root)
    return Checkout(label, root, commit, python, install, str(api_module),
                    tuple(found["settings"]), bool(found["keys"]))


def current_checkout() -> Checkout:
    """This tree, run by this interpreter."""
    return probe("current", PROJECT_ROOT, sys.executable, "this interpreter, this tree")


def runtime_requirements(pyproject: str) -> list[str]:
    """The ``[project] dependencies`` of a pyproject.toml's text."""
    requirements: list[str] = tomllib.loads(pyproject).get("project", {}).get("dependencies", [])
    return requirements


def unmet_requirements(requirements: Iterable[str],
                       installed: Callable[[str], str | None]) -> list[str]:
    """The requirements that ``installed`` (name -> version or None) does not satisfy.

    Extras are not followed: a missing extra's package shows as its own unmet requirement
    only where it is listed by itself. Markers that do not apply here are skipped.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    unmet = []
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            unmet.append(text)
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = installed(requirement.name)
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            unmet.append(text)
    return unmet


def installed_version(name: str) -> str | None:
    """The version of a distribution installed for this interpreter, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _worktree(rev: str, cache: Path) -> tuple[Path, str]:
    try:
        commit = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        raise ValueError(f"--baseline {rev}: no such commit in this repository") from None
    path = cache / f"baseline-{commit[:12]}"
    if path.is_dir():
        try:
            if _git("rev-parse", "HEAD", cwd=path) == commit:
                return path, commit
        except subprocess.CalledProcessError:
            pass
        _git("worktree", "remove", "--force", str(path))
    # --force: a worktree of this path deleted by hand is still registered; take its place
    # rather than pruning, which would touch every other worktree's registration too.
    _git("worktree", "add", "--force", "--detach", str(path), commit)
    return path, commit


def _own_venv(root: Path, commit: str, cache: Path) -> str:
    venv = cache / f"venv-{commit[:12]}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # noqa: S603
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(root)],  # noqa: S603
                       check=True)
    return str(python)


def baseline_checkout(rev: str, cache: Path) -> Checkout:
    """REV checked out beside this tree, with an interpreter that meets its dependencies."""
    cache.mkdir(parents=True, exist_ok=True)
    root, commit = _worktree(rev, cache)
    wanted = runtime_requirements((root / "pyproject.toml").read_text(encoding="utf-8"))
    unmet = unmet_requirements(wanted, installed_version)
    if not unmet:
        return probe("baseline", root, sys.executable,
                     "this interpreter (its dependencies are met here), its own tree first "
                     "on PYTHONPATH")
    log.info("baseline %s needs %s: installing it into a virtualenv of its own", rev,
             ", ".join(unmet))
    return probe("baseline", root, _own_venv(root, commit, cache),
                 f"its own virtualenv (unmet here: {', '.join(unmet)})")
