"""Reference weights: timm's key layout, all-or-nothing loads, round trips, named sources, convert.

`timm_shapes` tabulates timm's state-dict keys and shapes from timm's model code
(``timm/models/senet.py`` for the legacy layout, ``timm/models/resnet.py`` otherwise),
independently of `keras_se.weights`; the opt-in ``torch`` tests check the table against
timm's own state dicts and the loaded models' outputs against timm's models:

    python3 -m venv --system-site-packages /tmp/torchenv
    /tmp/torchenv/bin/pip install torch torchvision timm
    /tmp/torchenv/bin/python -m pytest -m torch tests/test_weights.py -s
"""

from __future__ import annotations

import json
import os
import sys

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

from keras_se import models
from keras_se import weights as reference
from keras_se.data import load_preprocessing
from keras_se.models import preprocessing, pretrained
from keras_se.models.resnet import build_resnet
from keras_se_core.cli import main
from tests.conftest import assert_usage_error, run_cli

TINY = dict(input_shape=(64, 64, 3), classes=5)  # 64x64: the ImageNet stem, fast


def timm_shapes(depths, *, block="bottleneck", groups=1, base_width=64, layout="legacy",
                se=True, classes=1000, senet=False):  # fmt: skip
    """timm's ``{key: shape}`` for an (SE-)ResNet/ResNeXt, written from timm's model code.

    ``senet``: SENet-154's changes (timm ``senet.py``, ``input_3x3``, ``SEBottleneck``,
    ``downsample_kernel_size=3``): a 3-conv stem to 128 channels, a first 1x1 conv of
    ``planes * 2`` channels, 3x3 projections after the first stage.
    """
    legacy = layout == "legacy"
    shapes = {}

    def conv(key, out, inp, k):
        shapes[f"{key}.weight"] = (out, inp, k, k)

    def bn(key, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{key}.{name}"] = (c,)
        shapes[f"{key}.num_batches_tracked"] = ()

    if senet:
        for k, (out, inp) in enumerate(((64, 3), (64, 64), (128, 64)), start=1):
            conv(f"layer0.conv{k}", out, inp, 3), bn(f"layer0.bn{k}", out)
        inplanes = 128
    else:
        conv("layer0.conv1" if legacy else "conv1", 64, 3, 7)
        bn("layer0.bn1" if legacy else "bn1", 64)
        inplanes = 64
    for stage, num_blocks in enumerate(depths):
        planes = 64 * 2**stage
        out = planes * (4 if block == "bottleneck" else 1)
        for i in range(num_blocks):
            p = f"layer{stage + 1}.{i}."
            if block == "basic":
                conv(p + "conv1", planes, inplanes, 3), bn(p + "bn1", planes)
                conv(p + "conv2", planes, planes, 3), bn(p + "bn2", planes)
            else:
                width = planes * base_width // 64 * groups
                first = planes * 2 if senet else width
                conv(p + "conv1", first, inplanes, 1), bn(p + "bn1", first)
                conv(p + "conv2", width, first // groups, 3), bn(p + "bn2", width)
                conv(p + "conv3", out, width, 1), bn(p + "bn3", out)
            if i == 0 and (stage > 0 or inplanes != out):
                kernel = 3 if senet and stage > 0 else 1
                conv(p + "downsample.0", out, inplanes, kernel), bn(p + "downsample.1", out)
            if se:  # C // 16 (legacy); timm rounds to a multiple of 8, the same for C >= 128
                units = out // 16 if legacy else max(8, (out // 16 + 4) // 8 * 8)
                se_name = p + ("se_module" if legacy else "se")
                conv(se_name + ".fc1", units, out, 1), conv(se_name + ".fc2", out, units, 1)
                shapes[se_name + ".fc1.bias"], shapes[se_name + ".fc2.bias"] = (units,), (out,)
            inplanes = out
    head = "last_linear" if legacy else "fc"
    shapes[f"{head}.weight"], shapes[f"{head}.bias"] = (classes, inplanes), (classes,)
    return shapes


def random_state(shapes, seed=0):
    """Random tensors with timm's names and shapes; unique values, positive variances."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = np.asarray(7, "int64")
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 1.5, shape).astype("float32")
        else:
            state[key] = (0.1 * rng.standard_normal(shape)).astype("float32")
    return state


def write_state(tmp_path, shapes, name="ref.safetensors", seed=0):
    state = random_state(shapes, seed)
    path = str(tmp_path / name)
    save_file(state, path)
    return path, state


def tiny(layout="legacy", **kwargs):
    """A small keras_se network (one or two units per stage) in ``layout``'s architecture."""
    arch = dict(stackwise_num_blocks=(2, 1, 1, 1), block="bottleneck")
    arch.update(kwargs)
    options = reference.layout_architecture(layout, groups=arch.get("groups", 1))
    return build_resnet(**arch, **options, **TINY)


def tiny_shapes(layout="legacy", **kwargs):
    arch = dict(depths=(2, 1, 1, 1), block="bottleneck", classes=TINY["classes"])
    if "stackwise_num_blocks" in kwargs:
        arch["depths"] = kwargs.pop("stackwise_num_blocks")
    if kwargs.pop("deep_stem", False):  # with first_width_ratio=0.5, shortcut_kernel_size=3
        kwargs = {k: v for k, v in kwargs.items() if k in ("groups", "base_width")}
        arch["senet"] = True
    arch.update(kwargs)
    arch["se"] = arch.pop("se_ratio", 16) is not None
    return timm_shapes(arch.pop("depths"), layout=layout, **arch)


def values(variable):
    return keras.ops.convert_to_numpy(variable)


CONFIGS = {
    "se_resnet_legacy": ("legacy", {}),
    "se_resnet_basic_legacy": ("legacy", dict(block="basic")),
    "se_resnext_legacy": ("legacy", dict(groups=32, base_width=4)),
    "se_resnet_timm": ("timm", {}),
    "se_resnext_timm": ("timm", dict(groups=32, base_width=4)),
    "resnet_basic_timm": ("timm", dict(block="basic", se_ratio=None)),
    "senet_legacy": ("legacy", dict(groups=64, base_width=4, first_width_ratio=0.5,
                                    deep_stem=True, shortcut_kernel_size=3)),
}  # fmt: skip


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_generated_key_table_is_timms(config):
    layout, kwargs = CONFIGS[config]
    state = reference.reference_state_dict(tiny(layout, **kwargs))
    assert {k: tuple(v.shape) for k, v in state.items()} == tiny_shapes(layout, **kwargs)


@pytest.mark.parametrize(
    "config",
    [
        "se_resnext_legacy",
        "se_resnet_timm",
        "se_resnet_basic_legacy",
        pytest.param("senet_legacy", marks=pytest.mark.slow),
    ],
)
def test_every_key_sets_exactly_one_weight(tmp_path, config):
    layout, kwargs = CONFIGS[config]
    path, state = write_state(tmp_path, tiny_shapes(layout, **kwargs))
    model = reference.load_reference_weights(tiny(layout, **kwargs), path)

    # Transposes keep the values: each weight is one file tensor's values, rearranged.
    by_values = {
        np.sort(v, axis=None).tobytes(): k for k, v in state.items() if v.dtype == "float32"
    }
    used = [by_values.get(np.sort(values(w), axis=None).tobytes()) for w in model.weights]
    assert None not in used and len(set(used)) == len(used) == len(by_values)

    # Orientation, with NumPy written out here: conv OIHW→HWIO, 1x1 FC → (in, out), dense.
    head = "last_linear" if layout == "legacy" else "fc"
    stem = "layer0." if layout == "legacy" else ""
    se = "se_module" if layout == "legacy" else "se"
    conv2 = "conv3_block1_2_conv"
    # SENet-154's third stem conv is layer0.conv3; the 7x7 stem conv is (layer0.)conv1.
    stem_conv, stem_key = ("conv1_3_conv", "conv3") if "deep_stem" in kwargs else ("conv1_conv", "conv1")
    expect = {
        stem_conv: np.transpose(state[f"{stem}{stem_key}.weight"], (2, 3, 1, 0)),
        conv2: np.transpose(state["layer2.0.conv2.weight"], (2, 3, 1, 0)),
        "predictions": state[head + ".weight"].T,
    }
    for name, kernel in expect.items():
        np.testing.assert_array_equal(values(model.get_layer(name).kernel), kernel)
    bn = model.get_layer("conv3_block1_0_bn")
    np.testing.assert_array_equal(
        values(bn.moving_variance), state["layer2.0.downsample.1.running_var"]
    )
    np.testing.assert_array_equal(values(bn.gamma), state["layer2.0.downsample.1.weight"])
    se_layer = model.get_layer("conv3_block1_se")
    fc1 = state[f"layer2.0.{se}.fc1.weight"]
    np.testing.assert_array_equal(values(se_layer.reduce_kernel), fc1[:, :, 0, 0].T)
    np.testing.assert_array_equal(values(se_layer.expand_bias), state[f"layer2.0.{se}.fc2.bias"])
    if kwargs.get("block") != "basic":  # the branch's last BN (bn3) is conv3_block1_3_bn
        bn3 = model.get_layer("conv3_block1_3_bn")
        np.testing.assert_array_equal(values(bn3.gamma), state["layer2.0.bn3.weight"])
        np.testing.assert_array_equal(
            values(bn3.moving_mean), state["layer2.0.bn3.running_mean"]
        )


@pytest.mark.parametrize("config", ["se_resnext_legacy", "se_resnet_timm"])
def test_round_trip_keras_file_keras(tmp_path, config):
    layout, kwargs = CONFIGS[config]
    source = tiny(layout, **kwargs)
    path = reference.save_reference_weights(source, str(tmp_path / "out.safetensors"))
    target = reference.load_reference_weights(tiny(layout, **kwargs), path)
    for a, b in zip(source.weights, target.weights, strict=True):
        assert a.path == b.path
        np.testing.assert_array_equal(values(a), values(b))
    x = np.random.default_rng(1).standard_normal((2, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(values(source(x)), values(target(x)))
    assert reference.detect_layout(reference.read_state_dict(path)) == layout


def test_missing_unused_or_misshapen_keys_load_nothing(tmp_path):
    shapes = tiny_shapes()
    model = tiny()
    before = [values(w) for w in model.weights]
    broken = dict(shapes)
    del broken["layer3.0.se_module.fc2.bias"]
    broken["layer9.0.extra.weight"] = (3,)
    broken["layer2.0.conv1.weight"] = (128, 256, 3, 3)
    path, _ = write_state(tmp_path, broken)
    with pytest.raises(ValueError) as info:
        reference.load_reference_weights(model, path)
    message = str(info.value)
    for needle in (
        "missing keys: layer3.0.se_module.fc2.bias",
        "unused keys: layer9.0.extra.weight",
        "layer2.0.conv1.weight (128, 256, 3, 3) vs (128, 256, 1, 1)",
        "Nothing was loaded",
    ):
        assert needle in message
    for old, w in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(old, values(w))


def test_classifier_shape_and_headless_models(tmp_path):
    path, state = write_state(tmp_path, tiny_shapes(classes=1000))
    with pytest.raises(ValueError, match="classes=1000 or include_top=False"):
        reference.load_reference_weights(tiny(), path)  # 5 classes
    arch = dict(stackwise_num_blocks=(2, 1, 1, 1), input_shape=(64, 64, 3))
    headless = build_resnet(**arch, include_top=False, pooling="avg")
    reference.load_reference_weights(headless, path)  # the classifier keys are skipped
    np.testing.assert_array_equal(
        values(headless.get_layer("conv5_block1_3_bn").moving_mean),
        state["layer4.0.bn3.running_mean"],
    )


@pytest.mark.parametrize(
    "layout, build_kwargs, needle",
    [
        ("legacy", dict(stride_in_1x1=False), "stride_in_1x1=True"),
        ("timm", dict(stride_in_1x1=True, stem_pool="torch"), "stride_in_1x1=False"),
        ("timm", dict(stride_in_1x1=False), "stem_pool='torch'"),
        ("legacy", dict(stem="cifar"), "stem='imagenet'"),
        ("legacy", dict(se_mode="pre"), "se_mode='standard'"),
        ("legacy", dict(se_kwargs={"gate": "hard_sigmoid"}), "gate='hard_sigmoid'"),
        ("timm", dict(block="basic", stride_in_1x1=False, stem_pool="torch"), "legacy_seresnet18"),
    ],
)
def test_architecture_mismatch_is_named(tmp_path, layout, build_kwargs, needle):
    block = build_kwargs.get("block", "bottleneck")
    path, _ = write_state(tmp_path, tiny_shapes(layout, block=block))
    model = build_resnet(stackwise_num_blocks=(2, 1, 1, 1), **{**TINY, **build_kwargs})
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        reference.load_reference_weights(model, path)


def test_batchnorm_epsilon_is_checked(tmp_path):
    path, _ = write_state(tmp_path, tiny_shapes())
    model = tiny()
    model.get_layer("conv2_block1_1_bn").epsilon = 1.001e-5  # keras.applications' value
    with pytest.raises(ValueError, match="epsilon=1e-05"):
        reference.load_reference_weights(model, path)


def test_file_types_and_missing_torch(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"\.safetensors, \.pth"):
        reference.read_state_dict(str(tmp_path / "w.npz"))
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        reference.read_state_dict(str(tmp_path / "nope.safetensors"))
    pth = tmp_path / "w.pth"
    pth.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # as if PyTorch were not installed
    with pytest.raises(reference.MissingDependencyError, match=r"keras-se\[torch\]"):
        reference.read_state_dict(str(pth))
    bad = tmp_path / "other.safetensors"
    save_file({"encoder.weight": np.zeros((2, 2), "float32")}, str(bad))
    with pytest.raises(ValueError, match="Not a timm SE-ResNet"):
        reference.load_reference_weights(tiny(), str(bad))


def test_builder_reads_the_layout_from_a_file(tmp_path):
    path, _ = write_state(
        tmp_path, timm_shapes((2, 2, 2, 2), block="basic", layout="timm", se=False)
    )
    assert pretrained.source_architecture(path) == {"stride_in_1x1": False, "stem_pool": "torch"}
    assert reference.file_architecture(path) == {"stride_in_1x1": False, "stem_pool": "torch"}
    model = models.ResNet18(input_shape=(64, 64, 3), weights=path)  # timm's resnet18 layout
    assert model.get_layer("pool1_pad") is not None
    assert preprocessing.of(model) == pretrained.DEFAULT_PREPROCESSING


@pytest.mark.slow
def test_convert_cli(tmp_path, capsys):
    path, state = write_state(tmp_path, timm_shapes((2, 2, 2, 2), block="basic"))
    out = str(tmp_path / "converted.keras")
    assert main(["convert", path, "--model", "se_resnet18", "--out", out]) == 0
    assert "converted.keras" in capsys.readouterr().out
    model = keras.models.load_model(out)
    np.testing.assert_array_equal(
        values(model.get_layer("conv5_block2_se").reduce_bias), state["layer4.1.se_module.fc1.bias"]
    )
    assert load_preprocessing(out).to_dict() == pretrained.DEFAULT_PREPROCESSING.to_dict()
    with open(out[: -len(".keras")] + ".preprocessing.json") as f:
        assert json.load(f)["crop_pct"] == 0.875

    assert main(["convert", path, "--out", out]) == 2  # a file needs --model
    assert "needs --model" in capsys.readouterr().err
    assert main(["convert", path, "--model", "se_resnet18", "--out", "x.h5"]) == 2
    assert "--out" in capsys.readouterr().err


@pytest.mark.slow
def test_convert_cli_without_network_is_one_line(tmp_path):
    result = run_cli(
        "convert", "timm/seresnet50.ra2_in1k", "--out", str(tmp_path / "m.keras"),
        env={"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert_usage_error(result, "network", "keras-se[hub]")
    assert not os.path.exists(tmp_path / "m.keras")


# ----------------------------------------------------------------------------- PyTorch (opt-in)
# The reference runs in a child process without TensorFlow: importing PyTorch's CUDA builds
# (triton) after TensorFlow can crash the process, whatever the test does.
TORCH_SCRIPT = r"""
import json, sys
import numpy as np, safetensors.torch, timm, torch

job = json.load(open(sys.argv[1]))
x = torch.from_numpy(np.load(job["input"])).permute(0, 3, 1, 2)
out = {}
for case in job["cases"]:
    model = timm.create_model(case["timm_name"], pretrained=False)
    if case.get("load"):  # a file written by keras_se, loaded strictly
        model.load_state_dict(safetensors.torch.load_file(case["load"]), strict=True)
    else:  # random, non-trivial BatchNorm statistics and affines (timm zero-inits some)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                    m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
        state = model.state_dict()
        if case["save"].endswith(".pth"):
            torch.save(state, case["save"])
        else:
            safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, case["save"])
    with torch.no_grad():
        np.save(case["output"], model.eval()(x).numpy())
    out[case["timm_name"]] = {k: list(v.shape) for k, v in model.state_dict().items()}
from timm.models import _registry
cfgs = {}
for name in job["sources"]:
    c = timm.models.get_pretrained_cfg(name)
    arch = name.split(".")[0]
    cfgs[name] = dict(input_size=c.input_size, interpolation=c.interpolation, crop_pct=c.crop_pct,
                      mean=c.mean, std=c.std, hf_hub_id=c.hf_hub_id, url=c.url,
                      default=arch + "." + _registry._model_default_cfgs[arch].tags[0])
json.dump({"shapes": out, "cfgs": cfgs, "versions": [torch.__version__, timm.__version__]},
          open(job["result"], "w"))
"""  # noqa: E501


def run_torch(workdir, cases, *, sources=()):
    """Runs `TORCH_SCRIPT` on ``cases`` in a child process; returns its JSON result."""
    import importlib.util
    import subprocess

    missing = [m for m in ("torch", "timm") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: pip install keras-se[torch] timm")
    x = np.random.default_rng(0).standard_normal((2, 224, 224, 3)).astype("float32")
    np.save(workdir / "x.npy", x)
    job = dict(input=str(workdir / "x.npy"), cases=cases, sources=list(sources))
    job["result"] = str(workdir / "result.json")
    (workdir / "job.json").write_text(json.dumps(job))
    done = subprocess.run(
        [sys.executable, "-c", TORCH_SCRIPT, str(workdir / "job.json")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((workdir / "result.json").read_text())
    result["x"] = x
    return result


#: timm model → (keras_se registry name, file format, timm_shapes arguments).
TORCH_CASES = {
    "legacy_seresnet50": ("se_resnet50", ".pth", dict(depths=(3, 4, 6, 3))),
    "legacy_seresnext50_32x4d": (
        "se_resnext50_32x4d", ".safetensors", dict(depths=(3, 4, 6, 3), groups=32, base_width=4)
    ),
    "legacy_seresnet18": ("se_resnet18", ".safetensors", dict(depths=(2, 2, 2, 2), block="basic")),
    "seresnet50": ("se_resnet50", ".safetensors", dict(depths=(3, 4, 6, 3), layout="timm")),
    "seresnext50_32x4d": (
        "se_resnext50_32x4d", ".safetensors",
        dict(depths=(3, 4, 6, 3), groups=32, base_width=4, layout="timm"),
    ),
    "resnet18": ("resnet18", ".safetensors", dict(depths=(2, 2, 2, 2), block="basic", layout="timm", se=False)),
    "legacy_seresnext26_32x4d": (
        "se_resnext26_32x4d", ".safetensors", dict(depths=(2, 2, 2, 2), groups=32, base_width=4)
    ),
    "legacy_senet154": (
        "senet154", ".safetensors", dict(depths=(3, 8, 36, 3), groups=64, base_width=4, senet=True)
    ),
    "seresnext101_32x8d": (
        "se_resnext101_32x8d", ".safetensors",
        dict(depths=(3, 4, 23, 3), groups=32, base_width=8, layout="timm"),
    ),
    "seresnext101_64x4d": (
        "se_resnext101_64x4d", ".safetensors",
        dict(depths=(3, 4, 23, 3), groups=64, base_width=4, layout="timm"),
    ),
    "resnext101_32x8d": (
        "resnext101_32x8d", ".safetensors",
        dict(depths=(3, 4, 23, 3), groups=32, base_width=8, layout="timm", se=False),
    ),
    "resnext101_64x4d": (
        "resnext101_64x4d", ".safetensors",
        dict(depths=(3, 4, 23, 3), groups=64, base_width=4, layout="timm", se=False),
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def timm_reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("timm")
    cases = [
        dict(
            timm_name=name,
            save=str(workdir / f"{name}{suffix}"),
            output=str(workdir / f"{name}.npy"),
        )
        for name, (_, suffix, _) in TORCH_CASES.items()
    ]
    result = run_torch(workdir, cases, sources=pretrained.SOURCES)
    result["cases"] = {case["timm_name"]: case for case in cases}
    return result


@pytest.mark.torch
@pytest.mark.parametrize("timm_name", list(TORCH_CASES))
def test_outputs_match_timm(timm_reference, timm_name):
    keras_name, _, table = TORCH_CASES[timm_name]
    shapes = {k: tuple(v) for k, v in timm_reference["shapes"][timm_name].items()}
    assert shapes == timm_shapes(**table)  # the table the fast tests use is timm's
    case = timm_reference["cases"][timm_name]
    model = models.get(keras_name, weights=case["save"], classifier_activation=None)
    expected = np.load(case["output"])
    diff = float(np.abs(values(model(timm_reference["x"])) - expected).max())
    print(
        f"\n{timm_name} ({os.path.splitext(case['save'])[1]}) vs keras_se {keras_name}: max |logit diff| = "
        f"{diff:.2e}, logits up to {np.abs(expected).max():.1f} (torch/timm "
        f"{'/'.join(timm_reference['versions'])})"
    )
    assert diff < 1e-4


@pytest.mark.torch
def test_written_file_loads_into_timm(tmp_path):
    model = models.SEResNeXt50(classifier_activation=None)
    path = reference.save_reference_weights(model, str(tmp_path / "k.safetensors"))
    case = dict(timm_name="legacy_seresnext50_32x4d", load=path, output=str(tmp_path / "o.npy"))
    result = run_torch(tmp_path, [case])
    diff = float(np.abs(values(model(result["x"])) - np.load(case["output"])).max())
    print(f"\nkeras_se → timm legacy_seresnext50_32x4d: max |logit diff| = {diff:.2e}")
    assert diff < 1e-4


@pytest.mark.torch
def test_source_table_matches_timm_pretrained_configs(timm_reference):
    for name, src in pretrained.SOURCES.items():
        cfg = timm_reference["cfgs"][name]
        p = src.preprocessing
        assert [3, *p.image_size] == cfg["input_size"], name
        assert (p.interpolation, p.crop_pct) == (cfg["interpolation"], cfg["crop_pct"]), name
        assert [list(p.mean), list(p.std)] == [cfg["mean"], cfg["std"]], name
        assert cfg["hf_hub_id"] in (src.hub_id, None), name
        assert cfg["hf_hub_id"] or cfg["url"] == src.url, name
        assert pretrained.get_source(name.split(".")[0]).name == cfg["default"], name
