"""Text encoder: penultimate-layer semantics, truncation reporting, safe loading from a file."""

import logging

import pytest
import torch

from amg_model.errors import CheckpointError
from amg_model.model.text import load_text_encoder, tiny_text_encoder

EOT = 49407


@pytest.fixture(scope="module")
def encoder():
    return tiny_text_encoder(context_dim=32, seed=0, layers=3)


def test_penultimate_block_then_ln_final(encoder):
    prompts = ["a person dancing on a beach", ""]
    tokens, _ = encoder.tokenize(prompts)
    model = encoder.model
    captured = {}
    hook = model.transformer.resblocks[-2].register_forward_hook(lambda m, a, out: captured.update(x=out))
    with torch.no_grad():
        model(tokens)  # OpenCLIP's own full forward, with its own mask handling
    hook.remove()
    expected = model.ln_final(captured["x"])
    got = encoder.encode(prompts)
    assert got.shape == (2, 77, 32)
    assert torch.allclose(got, expected, atol=1e-5)
    # the last block is really skipped
    with torch.no_grad():
        last = model.ln_final(model.transformer.resblocks[-1](captured["x"], attn_mask=model.attn_mask))
    assert not torch.allclose(got, last, atol=1e-3)


def test_causal_sequence(encoder):
    short, long = encoder.encode(["a red car", "a red car in the rain"])
    # <sot> a red car: identical prefix, later tokens cannot leak backwards
    assert torch.allclose(short[:4], long[:4], atol=1e-5)
    assert not torch.allclose(short[4:6], long[4:6], atol=1e-3)


def test_tokenize_pads_with_zero_and_reports_truncation(encoder, caplog):
    long_prompt = " ".join(["word"] * 80)
    tokens, truncated = encoder.tokenize(["hello world", long_prompt, " ".join(["word"] * 75)])
    assert truncated == [False, True, False]
    assert tokens.shape == (3, 77)
    assert tokens[0, 3] == EOT and (tokens[0, 4:] == 0).all()
    assert tokens[1, -1] == EOT and (tokens[1] != 0).all()
    assert tokens[2, -1] == EOT
    with caplog.at_level(logging.WARNING, logger="amg_model.model.text"):
        emb, flags = encoder.encode_with_truncation(["short", long_prompt])
    assert flags == [False, True]
    assert emb.shape == (2, 77, 32)
    assert sum("truncated" in r.message for r in caplog.records) == 1


def test_load_from_openclip_file_and_sd_checkpoint(tmp_path, encoder):
    sd = {k: v for k, v in encoder.model.state_dict().items() if k != "attn_mask"}
    full = sd | {
        "visual.proj": torch.zeros(2, 2),
        "logit_scale": torch.ones(()),
        "text_projection": torch.zeros(32, 8),
    }
    torch.save(full, tmp_path / "open_clip_pytorch_model.bin")
    torch.save(
        {"state_dict": {f"cond_stage_model.model.{k}": v for k, v in sd.items()}}, tmp_path / "sd21.ckpt"
    )
    reference = encoder.encode(["a dancer"])
    for name in ("open_clip_pytorch_model.bin", "sd21.ckpt"):
        loaded = load_text_encoder(tmp_path / name, dtype=torch.float64)
        assert loaded.context_dim == 32
        out = loaded.encode(["a dancer"])
        assert out.dtype == torch.float64
        assert torch.allclose(out.float(), reference, atol=1e-5)


def test_wrong_files_are_refused(tmp_path, encoder):
    torch.save({"text_model.encoder.layers.0.mlp.fc1.weight": torch.zeros(2)}, tmp_path / "hf_clip.bin")
    with pytest.raises(CheckpointError, match="hf_clip.bin is not an OpenCLIP text encoder.*Hugging Face"):
        load_text_encoder(tmp_path / "hf_clip.bin")
    sd = {
        k: v for k, v in encoder.model.state_dict().items() if k != "attn_mask" and "resblocks.1.mlp" not in k
    }
    torch.save(sd, tmp_path / "partial.bin")
    with pytest.raises(CheckpointError, match=r"partial.bin: .*missing \['transformer.resblocks.1.mlp"):
        load_text_encoder(tmp_path / "partial.bin")
