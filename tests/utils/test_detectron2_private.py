"""The private names of detectron2 and fvcore that the project relies on (utils/detectron2_private.py) still exist in
the installed versions, and nothing outside that module reaches the ones it wraps."""
import ast
import importlib
import inspect
import pathlib
import re
import textwrap

import pytest

from volumetric_attention.utils.detectron2_private import DEFAULT_TRAINER_INIT_ATTRIBUTES, PRIVATE_NAMES

REPO = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = REPO / "projects" / "VolumetricAttention" / "volumetric_attention"
PRIVATE_MODULE = PACKAGE / "utils" / "detectron2_private.py"


def _resolve(dotted: str):
    """The object of ``module.attr.attr``: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def _self_assignments(function) -> set:
    """The attributes that ``function`` assigns on ``self``, read from its source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {t.attr for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign))
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}


def _code_names(function) -> set:
    """The global and attribute names that ``function``'s code (its nested code included) reads."""
    function = inspect.unwrap(function)
    names, todo = set(), [function.__code__]
    while todo:
        code = todo.pop()
        names.update(code.co_names)
        todo.extend(c for c in code.co_consts if inspect.iscode(c))
    return names


@pytest.mark.parametrize("entry", PRIVATE_NAMES, ids=lambda e: f"{e.owner}.{e.name}")
def test_private_name_still_exists(entry):
    where = f"{entry.owner}.{entry.name}"
    relied_on = f"({entry.used_in} relies on it: {entry.why})"
    try:
        owner = _resolve(entry.owner)
    except (ImportError, AttributeError):
        pytest.fail(f"{entry.owner} is missing from the installed detectron2/fvcore, and with it {where} {relied_on}")
    if entry.kind == "attribute":
        assert hasattr(owner, entry.name), f"{where} is missing from the installed detectron2/fvcore {relied_on}"
    else:
        assert entry.kind == "instance", entry
        assert entry.name in _self_assignments(owner.__init__), (
            f"{entry.owner}.__init__ no longer sets self.{entry.name} in the installed detectron2/fvcore {relied_on}")
    if entry.read_by:
        assert entry.name in _code_names(_resolve(entry.read_by)), (
            f"{entry.read_by} no longer reads {entry.name} in the installed detectron2/fvcore, so the project's use "
            f"of {where} has no effect {relied_on}")


def test_the_gloo_group_cache_can_still_be_cleared():
    from detectron2.utils import comm

    assert hasattr(comm._get_global_gloo_group, "cache_clear"), (
        "detectron2.utils.comm._get_global_gloo_group is no longer an lru_cache: engine/ddp.py (_shut_down) cannot "
        "drop the gloo group it caches")


def test_vatrainer_builds_every_attribute_of_default_trainer_init():
    """VATrainer.__init__ follows DefaultTrainer.__init__: a detectron2 whose trainer holds more state fails here."""
    from volumetric_attention.engine import VATrainer

    from detectron2.engine import DefaultTrainer

    detectron2_attributes = _self_assignments(DefaultTrainer.__init__)
    assert detectron2_attributes == DEFAULT_TRAINER_INIT_ATTRIBUTES, (
        f"DefaultTrainer.__init__ of the installed detectron2 sets {sorted(detectron2_attributes)}, VATrainer.__init__ "
        f"(engine/trainer.py) was written for {sorted(DEFAULT_TRAINER_INIT_ATTRIBUTES)}")
    ours = _self_assignments(VATrainer.__init__)
    if "set_training_loop" in _code_names(VATrainer.__init__):
        ours.add("_trainer")
    assert ours == DEFAULT_TRAINER_INIT_ATTRIBUTES


def test_training_loop_is_where_default_trainer_reads_it():
    from volumetric_attention.utils.detectron2_private import set_training_loop

    from detectron2.engine import DefaultTrainer

    class Loop:
        model, data_loader, optimizer = object(), object(), object()

    trainer, loop = DefaultTrainer.__new__(DefaultTrainer), Loop()
    set_training_loop(trainer, loop)
    assert (trainer.model, trainer.data_loader, trainer.optimizer) == (loop.model, loop.data_loader, loop.optimizer)


def _sources():
    for folder in (REPO / "projects", REPO / "tools"):
        yield from sorted(folder.rglob("*.py"))


def test_no_mock_and_no_private_comm_names_outside_their_module():
    mock = re.compile(r"unittest\.mock|from unittest import mock")
    private = re.compile(r"\bcomm\._[A-Za-z]|\._trainer\b|\bdefaults\._[A-Za-z]")
    found = []
    for path in _sources():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if mock.search(line) or (path != PRIVATE_MODULE and private.search(line)):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, ("unittest.mock in production code, or a private detectron2 name outside "
                       "utils/detectron2_private.py:\n" + "\n".join(found))
