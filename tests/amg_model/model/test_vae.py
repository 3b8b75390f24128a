"""VideoVAE: shapes, scale factor and posterior mean, chunked decode, LDM conversion and loading."""

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from amg_model.errors import AMGError, CheckpointError
from amg_model.model.vae import load_vae, make_ldm_vae_state_dict, tiny_vae, tiny_vae_config
from amg_model.model.vae_convert import (
    VAEConfig,
    diffusers_to_ldm_vae,
    infer_vae_config,
    ldm_to_diffusers_vae,
)


@pytest.fixture(scope="module")
def vae():
    return tiny_vae(seed=0)


def _frames(n=3, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_encode_is_scaled_posterior_mean(vae):
    frames = _frames()
    latents = vae.encode(frames)
    assert latents.shape == (3, 4, 2, 2)
    with torch.no_grad():
        moments = vae.vae.quant_conv(vae.vae.encoder(frames))
    mean, logvar = moments.chunk(2, dim=1)
    assert torch.allclose(latents, 0.18215 * mean, atol=1e-6)
    assert not torch.allclose(mean, logvar)  # the mean half, not the whole moments tensor
    assert torch.equal(vae.encode(frames), latents)  # deterministic: no posterior sampling


def test_decode_undoes_the_scale_and_chunks_agree(vae):
    latents = torch.randn(5, 4, 2, 3, generator=torch.Generator().manual_seed(1))
    full = vae.decode(latents, chunk=5)
    assert full.shape == (5, 3, 16, 24)
    # batch size changes the summation order only: agreement to fp32 rounding of the output scale
    assert (vae.decode(latents, chunk=2) - full).abs().max() <= 1e-5 * full.abs().max()
    with torch.no_grad():
        expected = vae.vae.decode(latents / 0.18215).sample
    assert (full - expected).abs().max() <= 1e-5 * full.abs().max()
    assert torch.allclose(vae.encode(_frames(5), chunk=2), vae.encode(_frames(5), chunk=8), atol=1e-6)


def test_bad_shapes_are_refused(vae):
    with pytest.raises(AMGError, match="multiples of 8"):
        vae.encode(torch.zeros(1, 3, 12, 16))
    with pytest.raises(AMGError, match=r"expected \[F, 4, h, w\]"):
        vae.decode(torch.zeros(1, 4, 2, 2, 2))


def test_ldm_mapping_covers_sd21_both_ways():
    config = VAEConfig()
    with torch.device("meta"):
        reference = AutoencoderKL(**config.diffusers_kwargs()).state_dict()
    ldm = diffusers_to_ldm_vae(reference, config)
    assert len(ldm) == len(reference) == 248
    assert ldm["encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert "decoder.up.3.upsample.conv.weight" in ldm and "decoder.up.0.upsample.conv.weight" not in ldm
    assert ldm["decoder.up.0.block.0.nin_shortcut.weight"].shape == (128, 256, 1, 1)
    assert infer_vae_config(ldm, "ldm") == config
    back = ldm_to_diffusers_vae(ldm, config)
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in reference.items()}


@pytest.mark.parametrize("form", ["sd_checkpoint", "ldm_vae", "diffusers_vae"])
def test_load_vae_from_every_layout(tmp_path, form):
    config = tiny_vae_config()
    ldm = make_ldm_vae_state_dict(config, seed=4)
    if form == "sd_checkpoint":
        unet_junk = {"model.diffusion_model.out.2.weight": torch.zeros(1)}
        path = tmp_path / "v2-1_512-ema-pruned.ckpt"
        torch.save({"state_dict": {f"first_stage_model.{k}": v for k, v in ldm.items()} | unet_junk}, path)
    elif form == "ldm_vae":
        path = tmp_path / "vae.safetensors"
        save_file(ldm, str(path))
    else:
        path = tmp_path / "diffusion_pytorch_model.safetensors"
        save_file(ldm_to_diffusers_vae(ldm, config), str(path))
    vae = load_vae(path)
    assert vae.config == config
    expected = ldm_to_diffusers_vae(ldm, config)
    loaded = vae.vae.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_wrong_vae_files(tmp_path):
    torch.save({"input_blocks.0.0.weight": torch.zeros(1)}, tmp_path / "unet.pth")
    with pytest.raises(CheckpointError, match="unet.pth is not a VAE: it looks like a UNet"):
        load_vae(tmp_path / "unet.pth")
    ldm = make_ldm_vae_state_dict(tiny_vae_config())
    del ldm["decoder.mid.attn_1.k.weight"]
    save_file(ldm, str(tmp_path / "broken.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"broken.safetensors: .*missing \['decoder.mid_block.attentions.0.to_k"
    ):
        load_vae(tmp_path / "broken.safetensors")
