"""Safe file reading, load_unet on every accepted layout, refusal of wrong files, convert_checkpoint."""

import os
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from amg_model.errors import CheckpointError
from amg_model.model.checkpoint import CONFIG_KEY, convert_checkpoint, load_unet, read_tensors
from amg_model.model.config import UNetConfig
from amg_model.model.convert import original_to_diffusers
from amg_model.model.tiny import make_original_state_dict, random_diffusers_state_dict, tiny_unet_config


@pytest.fixture(scope="module")
def original_file(tmp_path_factory):
    """A tiny checkpoint in the released file's form: {"state_dict": original layout + LoRA}."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny_non_ema.pth"
    sd = make_original_state_dict(tiny_unet_config(), seed=5, lora_rank=4)
    torch.save({"state_dict": sd, "step": 640000}, path)
    return path, sd


def _inputs(config, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(2, config.in_channels, 2, 8, 8, generator=gen),
        torch.tensor([999, 1]),
        torch.randn(2, 77, config.cross_attention_dim, generator=gen),
    )


def test_load_original_release_layout(original_file):
    path, sd = original_file
    model = load_unet(path)
    assert model.config == tiny_unet_config()
    assert model.in_channels == 8 and model.context_dim == tiny_unet_config().cross_attention_dim
    x, t, ctx = _inputs(model.config)
    with torch.no_grad():
        eps = model(x, t, ctx)
    assert eps.shape == (2, 4, 2, 8, 8) and torch.isfinite(eps).all()
    expected, _ = original_to_diffusers(sd)
    loaded = model.unet.state_dict()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_bare_state_dict_and_module_prefix(tmp_path, original_file):
    _, sd = original_file
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "bare.pt")
    assert load_unet(tmp_path / "bare.pt").config == tiny_unet_config()


def test_convert_round_trip(tmp_path, original_file):
    path, _ = original_file
    reference = load_unet(path)
    for dtype, torch_dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        out = tmp_path / f"amg_{dtype}.safetensors"
        config = convert_checkpoint(path, out, dtype=dtype)
        assert config == reference.config
        with safe_open(str(out), "pt") as f:
            assert UNetConfig.from_json(f.metadata()[CONFIG_KEY]) == config
            assert f.get_tensor("conv_in.weight").dtype == torch_dtype
        model = load_unet(out)
        ref_sd, sd = reference.unet.state_dict(), model.unet.state_dict()
        tol = 0 if dtype == "fp32" else 1e-2
        assert all(torch.allclose(sd[k], ref_sd[k], atol=tol * ref_sd[k].abs().max().item()) for k in ref_sd)
    x, t, ctx = _inputs(config)
    with torch.no_grad():
        assert torch.equal(load_unet(tmp_path / "amg_fp32.safetensors")(x, t, ctx), reference(x, t, ctx))


def test_diffusers_safetensors_without_metadata_infers_config(tmp_path):
    config = UNetConfig(
        block_out_channels=(32, 32, 64),
        attention_levels=(False, True, False),
        layers_per_block=1,
        attention_head_dim=16,
        cross_attention_dim=48,
    )
    save_file(random_diffusers_state_dict(config), str(tmp_path / "plain.safetensors"))
    model = load_unet(tmp_path / "plain.safetensors", dtype=torch.float64)
    assert model.config == config and next(model.parameters()).dtype == torch.float64


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "marker"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"w": Evil()}}, f, protocol=2)
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Evil()}, tmp_path / "evil_zip.pth")
    for p in (path, tmp_path / "evil_zip.pth"):
        with pytest.raises(CheckpointError, match=rf"{p.name} was refused.*Python objects"):
            load_unet(p)
    assert not marker.exists()


def test_truncated_and_corrupt_files(tmp_path, original_file):
    data = original_file[0].read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint" * 64)
    save_file({"a": torch.zeros(64)}, str(tmp_path / "cut.safetensors"))
    cut = (tmp_path / "cut.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(cut[:-100])
    for name in ("cut.pth", "junk.ckpt", "cut.safetensors"):
        with pytest.raises(CheckpointError, match=rf"{name} is truncated or corrupt"):
            read_tensors(tmp_path / name)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_tensors(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="unsupported file type"):
        (tmp_path / "model.onnx").write_bytes(b"x")
        read_tensors(tmp_path / "model.onnx")


def test_modelscope_base_model_is_named(tmp_path):
    config = UNetConfig(
        block_out_channels=(32, 64),
        attention_levels=(True, False),
        layers_per_block=1,
        attention_head_dim=8,
        cross_attention_dim=32,
        in_channels=4,
    )
    torch.save(make_original_state_dict(config, lora_rank=0), tmp_path / "text2video_pytorch_model.pth")
    with pytest.raises(CheckpointError, match="ModelScope text-to-video base model.*8 input"):
        load_unet(tmp_path / "text2video_pytorch_model.pth")
    save_file(random_diffusers_state_dict(config), str(tmp_path / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model.safetensors is the ModelScope"):
        load_unet(tmp_path / "diffusion_pytorch_model.safetensors")


@pytest.mark.parametrize(
    "keys, looks_like",
    [
        (
            ["model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.out.2.weight"],
            "image .*UNet",
        ),
        (
            ["encoder.down.0.block.0.conv1.weight", "decoder.up.0.block.0.conv1.weight", "quant_conv.weight"],
            "VAE",
        ),
        (["first_stage_model.encoder.conv_in.weight"], "VAE"),
        (["token_embedding.weight", "transformer.resblocks.0.attn.in_proj_weight"], "text encoder"),
        (["down_blocks.0.resnets.0.conv1.weight", "conv_in.weight"], "image UNet in the diffusers layout"),
    ],
)
def test_other_models_are_recognised(tmp_path, keys, looks_like):
    path = tmp_path / "wrong.safetensors"
    save_file({k: torch.zeros(2) for k in keys}, str(path))
    with pytest.raises(
        CheckpointError,
        match=rf"wrong.safetensors is not an AMG UNet checkpoint: it looks like (an? )?{looks_like}",
    ):
        load_unet(path)


def test_missing_unexpected_and_mismatched_tensors(tmp_path, original_file):
    _, sd = original_file
    broken = {k: v for k, v in sd.items() if not k.startswith("output_blocks.1.0.out_layers")}
    torch.save(broken, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing.pth: .*4 missing \(e.g. up_blocks"):
        load_unet(tmp_path / "missing.pth")
    torch.save(sd | {"input_blocks.1.1.extra.weight": torch.zeros(3)}, tmp_path / "extra.pth")
    with pytest.raises(
        CheckpointError, match=r"extra.pth: .*1 unexpected \(e.g. down_blocks.0.attentions.0.extra"
    ):
        load_unet(tmp_path / "extra.pth")
    torch.save(sd | {"label_emb.0.weight": torch.zeros(3)}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match=r"foreign.pth: 1 tensors do not belong .*label_emb.0.weight"):
        load_unet(tmp_path / "foreign.pth")
    torch.save(sd | {"output_blocks.1.0.emb_layers.1.weight": torch.zeros(64, 7)}, tmp_path / "shape.pth")
    with pytest.raises(
        CheckpointError, match=r"shape.pth: 1 tensors have the wrong shape \(up_blocks.0.resnets.1"
    ):
        load_unet(tmp_path / "shape.pth")


def test_convert_rejects_bad_arguments(tmp_path, original_file):
    path, _ = original_file
    with pytest.raises(CheckpointError, match="dtype 'fp8'"):
        convert_checkpoint(path, tmp_path / "o.safetensors", dtype="fp8")
    with pytest.raises(CheckpointError, match="must end in .safetensors"):
        convert_checkpoint(path, tmp_path / "o.pth")
