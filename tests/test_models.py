"""Architecture registry: shapes, the no-skip probe, structural sameness, input-size rules."""

from __future__ import annotations

import re

import pytest
import torch
from schema_defaults import model_kwargs

from segrobust.networks import build_model, check_input_size
from segrobust.registry import UnknownNameError
from segrobust.spec.architectures import ARCHITECTURES

torch.set_num_threads(1)


def _tiny(arch: str, **overrides):
    return model_kwargs(arch, **overrides)


# Tiny widths per architecture and an edge each accepts in training mode (swin_unetr: the last
# axis is doubled so its deepest level, at 1/32, has more than one voxel for instance norm).
TINY = {
    "unet": (_tiny("unet", channels=(4, 8, 16)), 16),
    "noskip_unet": (_tiny("noskip_unet", channels=(4, 8, 16)), 16),
    "attention_unet": (_tiny("attention_unet", channels=(4, 8, 16)), 16),
    "vnet": (_tiny("vnet", channels=(4, 8, 16), kernel_size=3), 16),
    "noskip_vnet": (_tiny("noskip_vnet", channels=(4, 8, 16), kernel_size=3), 16),
    "unetpp": (_tiny("unetpp", features=(4, 4, 8, 8, 16, 4)), 32),
    "unetr": (_tiny("unetr", feature_size=4, hidden_size=16, mlp_dim=32, num_heads=2), 16),
    "swin_unetr": (_tiny("swin_unetr", feature_size=12, depths=(1, 1, 1, 1)), 32),
    "monai_unet": (_tiny("monai_unet", channels=(4, 8, 16), num_res_units=1), 16),
}


def test_every_registered_architecture_has_a_tiny_setting():
    assert sorted(TINY) == ARCHITECTURES.names()


def test_records_have_distinct_display_names_and_colours():
    records = [ARCHITECTURES.get(name) for name in ARCHITECTURES.names()]
    assert len({r.display_name for r in records}) == len(records)
    assert len({r.colour for r in records}) == len(records)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", r.colour) for r in records)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", sorted(TINY))
def test_builds_and_maps_one_channel_to_one_logit_channel(name, spatial_dims):
    kwargs, edge = TINY[name]
    size = (edge,) * (spatial_dims - 1) + (2 * edge if name == "swin_unetr" else edge,)
    assert check_input_size(name, spatial_dims, size, **kwargs) is None
    torch.manual_seed(0)
    model = build_model(name, spatial_dims, img_size=size, **kwargs).train()
    out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, 1, *size)
    out.mean().backward()  # trainable end to end: the first layer gets a gradient
    assert next(model.parameters()).grad is not None


def _output_with_deep_path_cut(model: torch.nn.Module, cut: torch.nn.Module, x: torch.Tensor):
    """Forward ``x`` with the output of module ``cut`` replaced by zeros."""
    handle = cut.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        handle.remove()


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(
    ("name", "cut_path"),
    [
        ("unet", "encoders.1"),
        ("noskip_unet", "encoders.1"),
        ("attention_unet", "encoders.1"),
        ("vnet", "downs.0"),
        ("noskip_vnet", "downs.0"),
    ],
)
def test_no_skip_probe(name, cut_path, spatial_dims):
    """Zero everything below the top level: only a skip can still carry the input to the output.

    The no-skip variants must then give the same output for two different inputs; the variants
    with skips must not. A skip left in a no-skip network fails this test.
    """
    kwargs, edge = TINY[name]
    torch.manual_seed(0)
    # Training mode: batch norm normalises with the batch's own statistics. (Eval mode with the
    # initial running statistics shrinks an untrained net's signal to nearly nothing.)
    model = build_model(name, spatial_dims, **kwargs).train()
    cut = model.get_submodule(cut_path)
    x1 = torch.randn(1, 1, *(edge,) * spatial_dims)
    x2 = torch.randn(1, 1, *(edge,) * spatial_dims)
    y1 = _output_with_deep_path_cut(model, cut, x1)
    y2 = _output_with_deep_path_cut(model, cut, x2)
    with torch.no_grad():
        assert (model(x1) - model(x2)).abs().max() > 1e-3  # uncut, the input matters for all
    if name.startswith("noskip_"):
        torch.testing.assert_close(y1, y2)
    else:
        assert (y1 - y2).abs().max() > 1e-3


def _param_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("with_skip", "without", "kwargs", "first_conv"),
    [
        (
            "unet",
            "noskip_unet",
            _tiny("unet", channels=(4, 8, 16, 32)),
            r"decoders\.\d+\.0\.conv\.weight",
        ),
        (
            "vnet",
            "noskip_vnet",
            _tiny("vnet", channels=(4, 8, 16)),
            r"decoders\.\d+\.convs\.0\.conv\.weight",
        ),
    ],
)
def test_no_skip_variant_differs_only_in_first_decoder_conv_inputs(
    with_skip, without, kwargs, first_conv
):
    a = _param_shapes(build_model(with_skip, 2, **kwargs))
    b = _param_shapes(build_model(without, 2, **kwargs))
    assert a.keys() == b.keys()
    differing = {k for k in a if a[k] != b[k]}
    assert differing == {k for k in a if re.fullmatch(first_conv, k)}
    assert len(differing) == len(kwargs["channels"]) - 1  # one per decoder level
    for k in differing:  # (out, in, *kernel): the skip's channels are exactly what is gone
        assert a[k][1] == 2 * b[k][1] and a[k][0] == b[k][0] and a[k][2:] == b[k][2:]


def test_attention_unet_is_the_unet_plus_gates():
    kwargs = _tiny("unet", channels=(4, 8, 16))
    unet = _param_shapes(build_model("unet", 2, **kwargs))
    att = _param_shapes(build_model("attention_unet", 2, **kwargs))
    assert {k: v for k, v in att.items() if ".gate." not in k} == unet
    assert any(".gate." in k for k in att)


@pytest.mark.parametrize(
    ("name", "dims", "size", "kwargs", "expected"),
    [
        ("unet", 2, 64, {}, None),
        ("unet", 2, (64, 60), {}, "multiple of 8"),
        ("unet", 2, 62, {"channels": (8, 16, 32)}, "multiple of 4"),
        ("noskip_vnet", 3, 20, {"channels": (8, 16, 32, 64)}, "multiple of 8"),
        ("unetr", 3, 96, {}, None),
        ("unetr", 3, 40, {}, "multiple of 16"),
        ("swin_unetr", 3, 48, {}, "multiple of 32"),
        ("swin_unetr", 2, 32, {}, "more than one voxel"),
        ("swin_unetr", 2, (32, 64), {}, None),
        ("unetpp", 2, 16, {}, "more than one voxel"),
        ("unetpp", 2, 16, {"norm": "batch"}, None),
        ("unet", 3, (16, 16), {}, "3 dimensions"),
    ],
)
def test_check_input_size(name, dims, size, kwargs, expected):
    why = check_input_size(name, dims, size, **model_kwargs(name, **kwargs))
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why


def test_unknown_name_lists_allowed_names():
    with pytest.raises(UnknownNameError, match="unknown architecture 'resnet'.*noskip_unet"):
        build_model("resnet", 2)
    with pytest.raises(UnknownNameError, match="allowed: .*unetr"):
        check_input_size("resnet", 2, 64, **model_kwargs("unet"))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        build_model("unet", 4, **model_kwargs("unet"))
    with pytest.raises(ValueError, match="unetr needs img_size"):
        build_model("unetr", 3, **model_kwargs("unetr"))
    with pytest.raises(ValueError, match="convs"):
        build_model("vnet", 2, **model_kwargs("vnet", channels=(4, 8), convs=(1,)))


def test_misspelt_or_missing_keys_are_named():
    kwargs = model_kwargs("unet")
    kwargs["chanels"] = kwargs.pop("channels")
    with pytest.raises(ValueError, match="unknown key.*chanels; missing key.*channels; it takes"):
        build_model("unet", 2, **kwargs)


@pytest.mark.parametrize(("proj_type", "embedding"), [("conv", "Conv3d"), ("perceptron", "Linear")])
def test_unetr_patch_embedding_follows_proj_type(proj_type, embedding):
    """The context paper's UNETR embeds patches with a linear layer (``perceptron``); MONAI's
    default is a strided convolution (``conv``)."""
    kwargs = dict(TINY["unetr"][0], proj_type=proj_type)
    model = build_model("unetr", 3, img_size=(16, 16, 16), **kwargs)
    layers = [type(m).__name__ for m in model.vit.patch_embedding.patch_embeddings.modules()]
    assert embedding in layers
    assert ("Conv3d" in layers) == (proj_type == "conv")
