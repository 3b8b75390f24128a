"""Original <-> diffusers key mapping, LoRA merge exactness, architecture inference."""

import dataclasses

import pytest
import torch

from amg_model.errors import CheckpointError
from amg_model.model.config import UNetConfig, infer_config_diffusers, infer_config_original
from amg_model.model.convert import (
    LORA_RE,
    diffusers_to_original,
    merge_lora,
    original_to_diffusers,
    prefix_map,
    rename_key,
)
from amg_model.model.tiny import make_original_state_dict, random_diffusers_state_dict, tiny_unet_config
from amg_model.model.unet import build_unet, expected_shapes


@pytest.fixture(scope="module")
def default_original():
    """The full-size released layout, shapes only (meta device)."""
    return make_original_state_dict(UNetConfig(), device="meta")


def test_default_layout_has_released_key_counts(default_original):
    lora = [k for k in default_original if LORA_RE.match(k)]
    assert len(default_original) == 2008
    assert len(lora) == 528
    assert len({LORA_RE.match(k)["attn"] + LORA_RE.match(k)["proj"] for k in lora}) == 264
    assert len(default_original) - len(lora) == len(expected_shapes(UNetConfig())) == 1480


def test_default_layout_matches_documented_keys(default_original):
    sd = default_original
    assert sd["input_blocks.0.0.weight"].shape == (320, 8, 3, 3)
    assert sd["input_blocks.0.1.proj_in.weight"].shape == (512, 320, 1)
    assert sd["input_blocks.0.1.proj_out.weight"].shape == (320, 512, 1)
    assert {k.split(".op.")[0] for k in sd if ".op." in k} == {f"input_blocks.{n}" for n in (3, 6, 9)}
    assert {k.rsplit(".conv.", 1)[0] for k in sd if k.endswith(".conv.weight")} == {
        "output_blocks.2.1",
        "output_blocks.5.3",
        "output_blocks.8.3",
    }
    assert "input_blocks.1.0.temopral_conv.conv4.3.weight" in sd
    assert "input_blocks.1.2.proj_in.weight" in sd and sd["input_blocks.1.2.proj_in.weight"].ndim == 3
    assert "middle_block.3.skip_connection.weight" not in sd and "middle_block.3.in_layers.0.weight" in sd
    assert "input_blocks.1.1.transformer_blocks.0.attn2.to_k_lora.down_linear.weight" in sd
    assert sd["input_blocks.1.1.transformer_blocks.0.attn2.to_k_lora.down_linear.weight"].shape == (4, 1024)


def test_default_layout_converts_on_meta(default_original):
    state, config = original_to_diffusers(default_original, "meta")
    assert config == UNetConfig()
    assert {k: v.shape for k, v in state.items()} == expected_shapes(config)


@pytest.mark.parametrize(
    "config",
    [
        tiny_unet_config(),
        dataclasses.replace(
            tiny_unet_config(),
            block_out_channels=(32, 64, 64),
            attention_levels=(True, True, False),
            layers_per_block=2,
            cross_attention_dim=24,
        ),
    ],
)
def test_round_trip_both_ways_and_inference(config):
    diffusers_sd = random_diffusers_state_dict(config, seed=1)
    original = diffusers_to_original(diffusers_sd, config)
    assert len(original) == len(diffusers_sd)
    assert not any(k.startswith(("down_blocks", "up_blocks", "mid_block")) for k in original)
    assert infer_config_original(original) == config
    assert infer_config_diffusers(diffusers_sd) == config
    back, inferred = original_to_diffusers(original)
    assert inferred == config
    assert back.keys() == diffusers_sd.keys()
    assert all(torch.equal(back[k], diffusers_sd[k]) for k in back)


def test_prefix_map_is_a_bijection():
    table = prefix_map(tiny_unet_config())
    assert len(set(table.values())) == len(table)


def test_merge_is_exact_against_adapters_run_on_the_fly():
    config = tiny_unet_config()
    original = make_original_state_dict(config, seed=2, lora_rank=4)
    merged_state, _ = original_to_diffusers(original)
    merged = build_unet(config, merged_state)

    base = {k: v for k, v in original.items() if not LORA_RE.match(k)}
    base_state, _ = original_to_diffusers(base)
    unmerged = build_unet(config, base_state)
    table = prefix_map(config)
    modules = dict(unmerged.unet.named_modules())
    hooks = []
    for key in original:
        m = LORA_RE.match(key)
        if m is None or m["part"] != "down_linear":
            continue
        down = original[key]
        up = original[key.replace("down_linear", "up_linear")]
        proj = "to_out.0" if m["proj"] == "out" else f"to_{m['proj']}"
        target = rename_key(f"{m['attn']}.{proj}.weight", table).removesuffix(".weight")
        hooks.append(
            modules[target].register_forward_hook(
                lambda mod, args, out, d=down, u=up: out + args[0] @ d.T @ u.T
            )
        )
    assert len(hooks) == 4 * sum(
        1 for k in original if k.endswith("attn1.to_q.weight") or k.endswith("attn2.to_q.weight")
    )

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 2, 8, 8, generator=gen)
    ctx = torch.randn(1, 77, config.cross_attention_dim, generator=gen)
    t = torch.tensor([500])
    with torch.no_grad():
        a, b = merged(x, t, ctx), unmerged(x, t, ctx)
        for h in hooks:
            h.remove()
        plain = unmerged(x, t, ctx)
    assert (a - b).abs().max() <= 1e-5 * a.abs().max(), (a - b).abs().max()
    assert (a - plain).abs().max() > 100 * (a - b).abs().max()  # the adapters do matter


def test_merge_lora_formula():
    w = torch.randn(6, 5)
    sd = {
        "blk.attn1.to_out.0.weight": w,
        "blk.attn1.to_out_lora.down_linear.weight": torch.randn(2, 5),
        "blk.attn1.to_out_lora.up_linear.weight": torch.randn(6, 2),
    }
    merged, n = merge_lora(sd)
    assert n == 1 and set(merged) == {"blk.attn1.to_out.0.weight"}
    expected = (
        w + sd["blk.attn1.to_out_lora.up_linear.weight"] @ sd["blk.attn1.to_out_lora.down_linear.weight"]
    )
    assert torch.allclose(merged["blk.attn1.to_out.0.weight"], expected, atol=1e-6)


def test_merge_lora_rejects_half_adapter_and_bad_shapes():
    with pytest.raises(CheckpointError, match="incomplete"):
        merge_lora(
            {
                "a.attn1.to_q.weight": torch.zeros(4, 4),
                "a.attn1.to_q_lora.down_linear.weight": torch.zeros(2, 4),
            }
        )
    with pytest.raises(CheckpointError, match="does not fit"):
        merge_lora(
            {
                "a.attn1.to_q.weight": torch.zeros(4, 4),
                "a.attn1.to_q_lora.down_linear.weight": torch.zeros(2, 3),
                "a.attn1.to_q_lora.up_linear.weight": torch.zeros(4, 2),
            }
        )
