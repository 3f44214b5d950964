"""Static checks over the project's own Python files (detectron2's code is not ours to check):

* every ``torch.load`` passes ``weights_only=True`` (a checkpoint cannot run code when loaded); no ``pickle``
  loading, no ``np.load(allow_pickle=True)``;
* no command goes through a shell: no ``shell=True``, no ``os.system`` / ``os.popen`` (a path with a space, a quote
  or ``;`` in it would be split or run).
"""
import ast

import _runs

ROOT = _runs.ROOT
SHELL_CALLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput", "commands.getoutput"}
PICKLE_LOADS = {"pickle.load", "pickle.loads", "cPickle.load", "cPickle.loads", "cloudpickle.load",
                "cloudpickle.loads", "dill.load", "dill.loads", "torch.serialization.load"}


def project_files():
    files = [ROOT / "setup.py"]
    for folder in ("projects", "tools", "tests"):
        files += [p for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts and "build" not in p.parts]
    return sorted(files)


def _dotted(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _keyword_is(call, name, value):
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def problems(source, filename="<src>"):
    """Every unsafe load or shell call in ``source``, as 'file:line: what'."""
    found = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("torch", "pickle", "os", "subprocess"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if name in {"torch.load"} | SHELL_CALLS | PICKLE_LOADS:
                    found.append((node.lineno, f"{filename}:{node.lineno}: imports {name} (call it by its module)"))
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func) or ""
        where = f"{filename}:{node.lineno}"
        if name == "torch.load" and not _keyword_is(node, "weights_only", True):
            found.append((node.lineno, f"{where}: torch.load without weights_only=True"))
        if name in PICKLE_LOADS:
            found.append((node.lineno, f"{where}: {name} unpickles (can run code)"))
        if name.endswith("np.load") or name == "numpy.load":
            if _keyword_is(node, "allow_pickle", True):
                found.append((node.lineno, f"{where}: {name}(allow_pickle=True)"))
        if name in SHELL_CALLS:
            found.append((node.lineno, f"{where}: {name} runs a shell"))
        if _keyword_is(node, "shell", True):
            found.append((node.lineno, f"{where}: {name}(shell=True)"))
    return [message for _, message in sorted(found)]


def test_checker_finds_each_kind_of_problem():
    bad = "\n".join([
        "import os, pickle, subprocess, torch, numpy as np",
        "torch.load(p)",
        "torch.load(p, weights_only=False)",
        "pickle.load(f)",
        "np.load(p, allow_pickle=True)",
        "os.system('rm ' + p)",
        "subprocess.run('ls ' + p, shell=True)",
        "from torch import load",
    ])
    assert [line.split(": ", 1)[0] for line in problems(bad)] == [f"<src>:{i}" for i in (2, 3, 4, 5, 6, 7, 8)]
    good = "\n".join([
        "import subprocess, torch, numpy as np",
        "torch.load(p, map_location='cpu', weights_only=True)",
        "np.load(p, mmap_mode='r')",
        "subprocess.run([sys.executable, '-m', 'pip', 'install', p], check=True)",
    ])
    assert problems(good) == []


def test_project_code_loads_no_pickles_and_runs_no_shell():
    files = project_files()
    assert ROOT / "projects" / "VolumetricAttention" / "train_net.py" in files
    assert ROOT / "tools" / "install_detectron2.py" in files
    found = [p for f in files for p in problems(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))]
    assert found == []


def test_checkpointer_loads_with_weights_only():
    """The tensor-only loader (which the checkpointer and strict weight loading go through) calls torch.load with
    weights_only=True."""
    calls = []
    for f in project_files():
        if "tests" in f.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _dotted(node.func) == "torch.load":
                calls.append((str(f.relative_to(ROOT)), _keyword_is(node, "weights_only", True)))
    assert ("projects/VolumetricAttention/volumetric_attention/utils/tensor_checkpoint.py", True) in calls
    assert all(ok for _, ok in calls), calls
