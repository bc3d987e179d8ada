"""The layout rules of docs/design.md ("Layout and import rules"): imports only downwards, no cycles, no
module imports a command-line module, every package is installed; one rule of the test suite: a test
that starts a process is marked slow; and one rule of the documentation: every relative link of
README.md and docs/*.md points to a file that exists."""
import ast
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# installed package -> folder (pyproject's package-dir)
ROOTS = {"hdl": os.path.join(ROOT, "hdl"), "hdl.algorithms": os.path.join(ROOT, "algorithms")}
LAYERS = {"hdl.commands": 4, "hdl.algorithms.bench": 3, "hdl.algorithms.run": 2, "hdl.algorithms.usb": 1}


def modules():
    """module name -> file, for every .py file of the project's packages."""
    out = {}
    for pkg, folder in ROOTS.items():
        for dirpath, dirnames, files in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
            if pkg == "hdl" and "algorithms" in dirpath:
                continue
            rel = os.path.relpath(dirpath, folder)
            base = pkg if rel == "." else pkg + "." + rel.replace(os.sep, ".")
            for f in files:
                if f.endswith(".py"):
                    out[base if f == "__init__.py" else f"{base}.{f[:-3]}"] = os.path.join(dirpath, f)
    return out


def imports(name, path):
    """Project modules imported anywhere in the file (module-level and inside functions)."""
    tree = ast.parse(open(path).read())
    is_pkg = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                base = parts if is_pkg else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def layer(mod):
    for prefix, n in LAYERS.items():
        if mod == prefix or mod.startswith(prefix + "."):
            return n
    return 0 if mod == "hdl" or (mod.startswith("hdl.") and not mod.startswith("hdl.algorithms")) else None


def project_graph():
    mods = modules()
    return mods, {m: {i for i in imports(m, p) if i in mods} for m, p in mods.items()}


def test_core_never_imports_semilearn_or_the_adapter():
    mods = modules()
    for m, p in mods.items():
        if layer(m) == 0:  # hdl.commands is the entry layer above everything
            bad = {i for i in imports(m, p) if i.split(".")[0] == "semilearn" or i.startswith("hdl.algorithms")}
            assert not bad, f"{m} imports {bad}"


def test_imports_only_downwards():
    mods, graph = project_graph()
    for m, deps in graph.items():
        if layer(m) is None:
            continue  # the package hdl.algorithms itself and its re-export modules
        for d in deps:
            if layer(d) is not None:
                assert layer(d) <= layer(m), f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"


def test_no_import_cycle():
    _, graph = project_graph()
    state = {}

    def visit(m, stack):
        state[m] = "open"
        for d in graph[m]:
            if state.get(d) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d, stack + [d])
        state[m] = "done"
    for m in graph:
        if m not in state:
            visit(m, [m])


def console_modules():
    text = open(os.path.join(ROOT, "pyproject.toml")).read()
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r'=\s*"([\w.]+):', section))


def test_console_scripts_go_through_the_quiet_entry_module():
    assert console_modules() == {"hdl.commands"}


def test_no_module_imports_a_command_line_module():
    """The console module and the command modules it calls are imported by no other module."""
    from hdl.commands import COMMANDS

    mods, graph = project_graph()
    entry = console_modules()
    commands = {module for module, _ in COMMANDS.values()} | entry
    assert commands <= set(mods), commands - set(mods)
    assert {"hdl.algorithms.run.cli", "hdl.relabel_cli", "hdl.algorithms.bench.cli"} <= commands
    for m, deps in graph.items():
        if m in entry:
            continue
        assert not (deps & commands) - {m}, f"{m} imports the command module(s) {deps & commands}"


def test_every_package_is_listed_in_pyproject():
    text = open(os.path.join(ROOT, "pyproject.toml")).read()
    listed = set(re.findall(r'"(hdl[\w.]*)"', text.split("packages = [", 1)[1].split("]", 1)[0]))
    packages = {m for m, p in modules().items() if p.endswith("__init__.py")}
    assert packages == listed, f"not listed: {packages - listed}; listed but absent: {listed - packages}"


# ----------------------------------------------------------------------------- the slow marker
# A test that starts a process (hdl-train, torchrun, a script) belongs to the slow tier, which
# `-m "not slow"` leaves out. A test file whose source names `subprocess.` or `torchrun` is checked
# test by test: a test that starts a process itself, or through a fixture or helper function of its
# file, must be marked slow (its own decorator or the module's pytestmark).
LAUNCH_TEXT = re.compile(r"subprocess\.|torchrun")


def _is_slow_mark(expr):
    return ast.unparse(expr).split("(")[0].endswith("mark.slow")


def _starts_a_process(fn):
    """The function's own code calls into subprocess or names torchrun as a command."""
    for node in ast.walk(fn):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "subprocess":
            return True
        if isinstance(node, ast.Constant) and node.value in ("torchrun", "torch.distributed.run"):
            return True
    return False


def unmarked_process_tests(source):
    """(tests that start a process without the slow mark, whether any test of the source is slow)."""
    tree = ast.parse(source)
    funcs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    module_slow = any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in n.targets)
                      and any(_is_slow_mark(e) for e in ast.walk(n.value) if isinstance(e, (ast.Attribute, ast.Call)))
                      for n in tree.body)

    def uses(fn):  # names the function refers to, its arguments (fixtures) included
        return {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)} | {a.arg for a in ast.walk(fn)
                                                                          if isinstance(a, ast.arg)}

    def starts(name, seen):
        fn = funcs[name]
        return _starts_a_process(fn) or any(starts(u, seen | {u}) for u in (uses(fn) & funcs.keys()) - seen)

    tests = {name: fn for name, fn in funcs.items() if name.startswith("test")}
    slow = {name for name, fn in tests.items() if module_slow or any(_is_slow_mark(d) for d in fn.decorator_list)}
    return sorted(name for name in tests if name not in slow and starts(name, {name})), bool(slow)


def test_the_checker_finds_an_unmarked_process_test():
    src = ("import subprocess, pytest\n"
           "def helper():\n    return subprocess.run(['true'])\n"
           "@pytest.fixture\ndef ran():\n    return helper()\n"
           "def test_direct():\n    subprocess.run(['true'])\n"
           "def test_through_a_fixture(ran):\n    pass\n"
           "def test_torchrun():\n    cmd = ['torchrun', 'x.py']\n"
           "def test_unit():\n    assert 'launch with torchrun'\n"
           "@pytest.mark.slow\ndef test_marked():\n    helper()\n")
    assert unmarked_process_tests(src) == (["test_direct", "test_through_a_fixture", "test_torchrun"], True)
    assert unmarked_process_tests("import pytest\npytestmark = pytest.mark.slow\n" + src.split("\n", 1)[1]) == \
        ([], True)
    assert unmarked_process_tests("import pytest\npytestmark = [pytest.mark.slow]\n" + src.split("\n", 1)[1]) == \
        ([], True)


def test_tests_that_start_processes_are_marked_slow():
    here = os.path.abspath(__file__)
    checked = []
    for name in sorted(os.listdir(os.path.join(ROOT, "tests"))):
        path = os.path.join(ROOT, "tests", name)
        if not (name.startswith("test_") and name.endswith(".py")) or path == here:
            continue
        source = open(path).read()
        if not LAUNCH_TEXT.search(source):
            continue
        unmarked, any_slow = unmarked_process_tests(source)
        assert not unmarked, f"{name}: these tests start a process; mark them @pytest.mark.slow: {unmarked}"
        assert any_slow, f"{name} starts processes but none of its tests is marked slow"
        checked.append(name)
    assert checked  # the suite has process tests; finding none means the search is broken


# ----------------------------------------------------------------------------- documentation links
# [text](target) and [text](target "title"); images too. Absolute URLs and mailto: are not checked;
# a target's #anchor is dropped (the file must exist, the anchor is not checked).
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def doc_files():
    docs = os.path.join(ROOT, "docs")
    pages = sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    return [os.path.join(ROOT, "README.md")] + pages


def broken_links(path):
    """Relative link targets of a markdown file that name no existing file or folder."""
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # code blocks hold no links
    text = re.sub(r"`[^`\n]*`", "", text)  # nor does inline code
    bad = []
    for target in LINK.findall(text):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (http:, https:, mailto:) or an anchor in the same file
        file = target.split("#", 1)[0]
        if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(path), file))):
            bad.append(target)
    return bad


def test_the_link_checker_finds_a_broken_link(tmp_path):
    (tmp_path / "there.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md) [ok](there.md#a) [web](https://example.org/x) [here](#top)\n"
                    "[gone](missing.md) ![img](plots/none.png) [gone too](sub/there.md#b \"title\")\n"
                    "`[code](not_checked.md)`\n```\n[block](not_checked_either.md)\n```\n")
    assert broken_links(str(page)) == ["missing.md", "plots/none.png", "sub/there.md#b"]


def test_readme_and_docs_links_point_to_existing_files():
    files = doc_files()
    assert len(files) > 1 and os.path.join(ROOT, "docs", "training.md") in files
    bad = {os.path.relpath(f, ROOT): broken_links(f) for f in files}
    bad = {f: links for f, links in bad.items() if links}
    assert not bad, f"broken relative links: {bad}"
