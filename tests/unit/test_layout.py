"""The shape of the packages: no import circle, no arrow from a lower package up to a higher
one, and modules and functions of a size a reader takes in at once.

Every import counts, wherever it is written (module top, inside a function, under
``TYPE_CHECKING``, ``importlib.import_module("...")`` with a literal name): a lazy import
is still a dependency, and a circle through one still ties the modules together.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# export/: a package imports only packages of a lower rank (or of its own).
EXPORT_LAYERS = {
    "model": 0,
    "phantoms": 0,
    "sources": 1,
    "evaluation": 2,
    "training": 3,
    "packaging": 4,
    "bench": 5,
}

# api/: what each room may import besides itself (docs/architecture.md draws it). Arrows go
# HTTP -> study flow -> {dicom, inference, lesions}; dicom and inference know nothing of each
# other; the commands sit on top.
API_ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "logs": set(),  # the log's formats and context (request, job, client): stdlib only
    "metrics": set(),  # the Prometheus metrics each process counts: prometheus-client only
    "schemas": {"errors"},
    "auth": {"db", "errors"},  # who is calling: keys, tokens, signed links; no HTTP
    "dicom": {"errors"},
    "inference": {"errors", "metrics"},
    "lesions": {"dicom", "inference"},  # slice geometry; the window formula for pictures
    "config": {"dicom", "inference"},  # body-part codes; the model's name and windows
    "tritonserver": {"inference"},  # the tensor contract
    # DICOM SEG and SR from the typed result: source headers, lesion labels, no HTTP
    "reports": {"dicom", "errors", "inference", "lesions", "schemas"},
    # The job database: SQLite or PostgreSQL behind one interface; knows nothing of jobs.
    "db": {"errors"},
    # Objects by key, on disk or in an S3-compatible bucket; nothing of studies.
    "objects": {"errors"},
    "study": {"auth", "config", "db", "dicom", "errors", "inference", "lesions", "logs",
              "metrics", "objects", "reports", "schemas"},
    # DICOM in (STOW-RS's instances, the DIMSE listener): to the same intake as uploads.
    "dimse": {"auth", "config", "dicom", "errors", "study"},
    # Results back to the PACS: the ledger's due rows, the job's SEG and SR, sent.
    "delivery": {"config", "errors", "logs", "metrics", "study"},
    "http": {"auth", "config", "delivery", "dimse", "errors", "inference", "logs", "metrics",
             "schemas", "study"},
    "commands": {"auth", "config", "delivery", "dimse", "http", "logs", "tritonserver"},
    "cli": set(),
}

MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_names(
    tree: ast.AST, module: str, is_package: bool, modules: set[str]
) -> set[str]:
    """Every dotted name ``module`` imports: for ``from package import name``, the submodule
    ``package.name`` when there is one, else ``package``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                names.add(submodule if submodule in modules else base)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (itself excluded)."""
    paths = {_module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imported = _imported_names(tree, module, path.name == "__init__.py", set(paths))
        graph[module] = {name for name in imported if name in paths and name != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected sets of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward_arrows(graph: dict[str, set[str]], layers: dict[str, int]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a package imports one of a higher rank."""
    arrows = []
    for module, targets in sorted(graph.items()):
        source = _subpackage(module)
        for target in sorted(targets):
            imported = _subpackage(target)
            if source in layers and imported in layers and layers[imported] > layers[source]:
                arrows.append((module, target))
    return arrows


@pytest.fixture(scope="module")
def export_graph() -> dict[str, set[str]]:
    return import_graph(ROOT, "export")


def test_export_has_no_import_circle(export_graph: dict[str, set[str]]) -> None:
    assert [sorted(circle) for circle in circles(export_graph)] == []


def test_export_packages_import_only_downwards(export_graph: dict[str, set[str]]) -> None:
    assert upward_arrows(export_graph, EXPORT_LAYERS) == []


def test_every_export_package_has_a_rank() -> None:
    packages = {p.parent.name for p in (ROOT / "export").glob("*/__init__.py")}
    assert packages == set(EXPORT_LAYERS)


def _room(module: str) -> str:
    """``api.study.pipeline`` -> ``study``; a top-level module is its own room."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def forbidden_arrows(
    graph: dict[str, set[str]], allowed: dict[str, set[str]]
) -> list[tuple[str, str]]:
    """(importer, imported) pairs across rooms that ``allowed`` does not list."""
    return [
        (module, target)
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if _room(module) != _room(target)
        and _room(target) not in allowed.get(_room(module), set())
        and _room(module) != "api"  # the package's own __init__
    ]


def test_api_has_no_import_circle() -> None:
    assert [sorted(circle) for circle in circles(import_graph(ROOT, "api"))] == []


def test_api_rooms_import_only_what_they_may() -> None:
    assert forbidden_arrows(import_graph(ROOT, "api"), API_ALLOWED) == []


def test_every_api_room_is_placed() -> None:
    rooms = {_room(_module_name(p, ROOT)) for p in (ROOT / "api").rglob("*.py")}
    assert rooms - {"api"} == set(API_ALLOWED)


def oversized(package: str) -> list[str]:
    """Modules over MAX_MODULE_LINES and functions over MAX_FUNCTION_LINES in ``package``."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    return found


@pytest.mark.parametrize("package", ["api", "export"])
def test_modules_and_functions_stay_small(package: str) -> None:
    assert oversized(package) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checks_find_circles_and_upward_arrows(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low/__init__.py": "",
            "pkg/low/a.py": "def f():\n    from pkg.high import b\n",  # lazy, still an arrow
            "pkg/low/c.py": "from . import d\n",
            "pkg/low/d.py": "import importlib\nimportlib.import_module('pkg.low.c')\n",
            "pkg/high/__init__.py": "",
            "pkg/high/b.py": "from pkg.low import a\nfrom typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg.low.c import x\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.high.b"] == {"pkg.low.a", "pkg.low.c"}
    assert sorted(map(sorted, circles(graph))) == [
        ["pkg.high.b", "pkg.low.a"],
        ["pkg.low.c", "pkg.low.d"],
    ]
    assert upward_arrows(graph, {"low": 0, "high": 1}) == [("pkg.low.a", "pkg.high.b")]
    assert forbidden_arrows(graph, {"low": set(), "high": {"low"}}) == [
        ("pkg.low.a", "pkg.high.b")
    ]


def test_the_architecture_rooms_match_the_tree() -> None:
    """docs/architecture.md's room table names every package, and nothing that is gone."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text[text.index("## Rooms"):text.index("## Decisions")]
    paths = set(re.findall(r"`((?:api|export|model_repository|tests)/[^`…{]*)`", table))
    assert paths, "no paths in the room table"
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []
    # Within a package's row, the modules it names (`name.py` or `name`) exist there.
    for row in table.splitlines():
        package = re.match(r"\| `((?:api|export)/\w+)/`", row)
        if package:
            folder = ROOT / package.group(1)
            named = re.findall(r"`([a-z_][a-z0-9_]*)(?:\.py)?`", row.split("|")[2])
            missing = [n for n in named if not (folder / f"{n}.py").exists()
                       and not (folder / n).is_dir()]
            assert missing == [], f"{package.group(1)} names {missing}"
    packages = {f"{p.parent.relative_to(ROOT)}/" for p in ROOT.glob("*/*/__init__.py")
                if p.parts[-3] in ("api", "export")}
    assert sorted(packages - paths) == []
