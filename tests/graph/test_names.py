"""Every name a model YAML hands to Ultralytics' parse_model is checked first (attnyolo/graph/names.py).

parse_model eval()s the activation, looks modules up in torch.nn, torchvision.ops and its own globals, and turns
string arguments into its locals or literals. Each test builds a YAML that would make it do something else and
checks that attnyolo refuses it (build() and the names check) before Ultralytics sees it: the marker file the
payload would create never exists.
"""

from __future__ import annotations

import copy

import pytest
from torch import nn
from ultralytics.nn.modules import Conv
from ultralytics.nn.tasks import yaml_model_load

import attnyolo
from attnyolo.graph import BuildError, HyperparameterError, UnknownModuleError
from attnyolo.graph.names import check_activation, check_buildable
from attnyolo.graph.ultralytics import resolve_layer


def _yolov8n(**top) -> dict:
    cfg = copy.deepcopy(yaml_model_load("yolov8n.yaml"))
    cfg.update(top)
    return cfg


def _with_row(row: list, at: int = 0) -> dict:
    cfg = _yolov8n()
    cfg["head"][at] = row
    return cfg


def _code(marker) -> str:
    return f"open({str(marker)!r}, 'w').close()"


@pytest.mark.parametrize(
    "activation",
    [
        "exec({code!r})",
        "__import__('os').system('touch {marker}')",
        "nn.SiLU() if exec({code!r}) else nn.SiLU()",
        "nn.LeakyReLU(exec({code!r}))",
        "nn.LeakyReLU(negative_slope=exec({code!r}))",
        "nn.LeakyReLU(**{{'negative_slope': 0.1}})",
        "torch.load('{marker}')",
        "nn.functional.relu",
        "nn.Module.__subclasses__()",
        "os.nn.SiLU()",
    ],
)
def test_activation_that_is_not_a_literal_layer_call_is_refused(tmp_path, activation):
    marker = tmp_path / "ran"
    act = activation.format(code=_code(marker), marker=marker)
    with pytest.raises(BuildError, match=r"activation .* is not of the form nn\.<Layer>\(literal arguments\)"):
        attnyolo.build(_yolov8n(activation=act))
    assert not marker.exists()
    assert Conv.default_act.__class__ is nn.SiLU  # the process-wide default was never replaced


@pytest.mark.parametrize("activation", ["nn.SiLU()", "torch.nn.ReLU()", "nn.LeakyReLU(0.1)", "nn.ELU(alpha=0.5)"])
def test_literal_activation_is_accepted(activation):
    check_activation(activation)


def test_activation_that_is_not_a_string_is_refused():
    with pytest.raises(BuildError, match=r"activation 3 is not of the form"):
        check_activation(3)


@pytest.mark.parametrize(
    ("module", "why"),
    [
        ("torch_safe_load", "a function of ultralytics.nn.tasks (full pickle load of its argument)"),
        ("yaml_model_load", "a function of ultralytics.nn.tasks"),
        ("DetectionModel", "a whole model class: builds the YAML file named by its argument"),
        ("BaseModel", "a model base class"),
        ("SemanticSegmentationLoss", "a loss in tasks' globals, not a layer"),
        ("nn.functional.relu", "a function (dotted name) under torch.nn"),
        ("nn.modules.module", "a module path under torch.nn"),
        ("nn.init", "a module of torch.nn"),
        ("torchvision.ops.nms", "a function of torchvision.ops"),
        ("torchvision.ops.misc.ConvNormActivation", "a dotted name under torchvision.ops"),
        ("__builtins__", "a dunder global of tasks"),
        ("os", "a module"),
    ],
)
def test_module_name_that_is_not_a_layer_is_refused(tmp_path, module, why):
    cfg = _with_row([-1, 1, module, [str(tmp_path / "other.pt")]])
    with pytest.raises(BuildError, match=rf"layer 10: module '{module}' is neither an Ultralytics, torch nor attnyolo"):
        attnyolo.build(cfg)


@pytest.mark.parametrize(
    ("module", "cls"),
    [("Conv", Conv), ("nn.Upsample", nn.Upsample), ("torchvision.ops.FrozenBatchNorm2d", None), ("ay_cbam", None)],
)
def test_layer_names_resolve_to_their_class(module, cls):
    got = resolve_layer(module)
    assert issubclass(got, nn.Module)
    if cls is not None:
        assert got is cls
    if module == "ay_cbam":
        assert got.__name__ == "ay_cbam" and got.attention == "cbam"


def test_unknown_zoo_name_is_refused_with_the_closest_names():
    with pytest.raises(UnknownModuleError, match="unknown attention 'cbamm'.*cbam"):
        check_buildable(_with_row([-1, 1, "ay_cbamm", []], at=1))


@pytest.mark.parametrize(
    "arg",
    ["__import__('os').system('touch {marker}')", "exec({code!r})", "[x for x in ()]", "__class__", "a.b"],
)
def test_string_argument_that_is_an_expression_is_refused(tmp_path, arg):
    marker = tmp_path / "ran"
    value = arg.format(code=_code(marker), marker=marker)
    cfg = _yolov8n()
    cfg["head"][-1] = [[15, 18, 21], 1, "Detect", [value]]  # the head's args
    with pytest.raises(BuildError, match=r"layer 22 \(Detect\): argument .* is neither a literal nor a name"):
        attnyolo.build(cfg)
    assert not marker.exists()


def test_string_arguments_of_ultralytics_yamls_are_accepted():
    check_buildable(_with_row([-1, 1, "nn.Upsample", ["None", 2, "nearest"]]))


@pytest.mark.parametrize("hparams", [{"__class__": 1}, {"rd_ratio": 0.25, "forward": "exec('x')"}])
def test_attention_row_with_unknown_hyper_parameter_names_is_refused(hparams):
    cfg = _yolov8n()
    cfg["head"].insert(1, [-1, 1, "ay_se", [hparams]])
    cfg["head"][2] = [[-1, 6], 1, "Concat", [1]]
    with pytest.raises(HyperparameterError, match="'se' has no hyper-parameter"):
        check_buildable(cfg)


def test_activation_name_hyper_parameter_is_looked_up_not_evaluated(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(ValueError, match="unknown activation"):
        attnyolo.create("se", 16, act_layer=f"exec({_code(marker)!r})")
    assert not marker.exists()


@pytest.mark.parametrize("nc", [0, -1, 1.5, True, "3"])
def test_build_refuses_a_class_count_below_one_or_not_an_integer(nc):
    with pytest.raises(BuildError, match=r"nc \(number of classes\) must be an integer >= 1, got"):
        attnyolo.build("yolov8n.yaml", nc=nc)


def test_build_refuses_a_yaml_with_no_classes():
    with pytest.raises(BuildError, match=r"the YAML's nc \(number of classes\) must be an integer >= 1, got 0"):
        attnyolo.build(_yolov8n(nc=0))


def test_build_accepts_one_class():
    assert attnyolo.build("yolov8n.yaml", nc=1).yaml["nc"] == 1
