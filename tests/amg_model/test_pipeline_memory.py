"""generate_video's memory options: offloading between stages, VAE chunks, temporal windows."""

import pytest
import torch

from amg_model import pipeline
from amg_model.pipeline import MemoryOptions

# The compute device and the offload device are both the CPU here, so the devices of the weights cannot
# tell them apart; "cpu:0" names the compute device differently, and every move and every forward is
# written into one log whose order shows which model sat on which device during which stage.
COMPUTE = torch.device("cpu", 0)
OFFLOAD = torch.device("cpu")


def _models():
    from amg_model.demo_models import _tiny_unet
    from amg_model.model.text import tiny_text_encoder
    from amg_model.model.vae import tiny_vae

    return _tiny_unet(32, torch.device("cpu")), tiny_vae(), tiny_text_encoder(32)


def _record(log: list, name: str, module: torch.nn.Module, runs: dict | None = None) -> None:
    """Log every ``module.to(device)`` call and every forward of ``module`` (or of each of ``runs``)."""
    real_to = module.to

    def to(*args, **kwargs):
        device = kwargs.get("device", args[0] if args else None)
        log.append((name, "to", torch.device(device)))
        return real_to(*args, **kwargs)

    module.to = to
    for label, part in (runs or {"forward": module}).items():
        part.register_forward_pre_hook(
            lambda m, inputs, label=label: log.append((name, label, None)) and None
        )


def _stages(log: list) -> list[tuple[str, str]]:
    """The log with repeated forwards of one model merged: ``[(model, "to cpu:0" / "forward" / ...)]``."""
    out = []
    for name, what, device in log:
        entry = (name, what if device is None else f"to {device}")
        if not out or out[-1] != entry:
            out.append(entry)
    return out


@pytest.fixture(scope="module")
def frames():
    return torch.rand(20, 16, 16, 3, generator=torch.Generator().manual_seed(1))


def test_offloaded_run_gives_the_frames_of_the_plain_run(frames):
    unet, vae, text = _models()
    plain = pipeline.generate_video(unet, vae, text, frames, "a person", steps=2, seed=3)
    offloaded = pipeline.generate_video(
        unet, vae, text, frames, "a person", steps=2, seed=3,
        memory=MemoryOptions.low_vram(vae_chunk=3, window_batch=None),
    )  # fmt: skip
    torch.testing.assert_close(offloaded, plain, atol=1e-6, rtol=0)


def test_each_model_is_on_the_compute_device_only_for_its_own_stage(frames, monkeypatch):
    unet, vae, text = _models()
    log: list = []
    monkeypatch.setattr(pipeline, "_free_device_cache", lambda device: log.append(("cache", "empty", None)))
    _record(log, "text", text)
    _record(log, "vae", vae, {"encode": vae.vae.encoder, "decode": vae.vae.decoder})
    _record(log, "unet", unet)
    memory = MemoryOptions.low_vram(offload_device=OFFLOAD)
    pipeline.generate_video(unet, vae, text, frames, "a person", steps=2, device=COMPUTE, memory=memory)
    on, off = f"to {COMPUTE}", f"to {OFFLOAD}"
    assert _stages(log) == [
        ("text", off), ("vae", off), ("unet", off), ("cache", "empty"),  # all wait on the offload device
        ("text", on), ("text", "forward"), ("text", off), ("cache", "empty"),
        ("vae", on), ("vae", "encode"), ("vae", off), ("cache", "empty"),
        ("unet", on), ("unet", "forward"), ("unet", off), ("cache", "empty"),
        ("vae", on), ("vae", "decode"), ("vae", off), ("cache", "empty"),  # the UNet is off the device
    ]  # fmt: skip
    for module in (text, vae, unet):
        assert {p.device for p in module.parameters()} == {OFFLOAD}


def test_without_offloading_no_model_moves(frames):
    unet, vae, text = _models()
    log: list = []
    for name, module in (("text", text), ("vae", vae), ("unet", unet)):
        _record(log, name, module, {})
    pipeline.generate_video(unet, vae, text, frames, "a person", steps=1)
    assert [entry for entry in log if entry[1] == "to"] == []


def test_a_fast_unet_in_eager_mode_is_moved_through_its_module(frames):
    from amg_model.model.runtime import prepare_unet

    unet, vae, text = _models()
    fast = prepare_unet(unet, "cpu")
    log: list = []
    _record(log, "unet", fast.unet)
    pipeline.generate_video(
        fast, vae, text, frames, "a person", steps=1, device=COMPUTE, memory=MemoryOptions(offload=True)
    )
    assert _stages(log) == [
        ("unet", f"to {OFFLOAD}"), ("unet", f"to {COMPUTE}"), ("unet", "forward"), ("unet", f"to {OFFLOAD}"),
    ]  # fmt: skip


def test_offloading_a_graphed_unet_frees_its_graphs(frames):
    from amg_model.model.fast import FastUNet

    unet, vae, text = _models()
    fast = FastUNet(unet.unet, dtype=torch.float32, mode="cuda_graph")  # on the CPU it runs eagerly
    log: list = []
    _record(log, "unet", fast.unet)
    release = fast.release_graphs
    fast.release_graphs = lambda: log.append(("unet", "release graphs", None)) or release()
    pipeline.generate_video(
        fast, vae, text, frames, "a person", steps=1, device=COMPUTE, memory=MemoryOptions(offload=True)
    )
    assert _stages(log) == [
        ("unet", f"to {OFFLOAD}"), ("unet", "release graphs"), ("unet", f"to {COMPUTE}"), ("unet", "forward"),
        ("unet", f"to {OFFLOAD}"), ("unet", "release graphs"),
    ]  # fmt: skip


def test_window_and_vae_chunk_settings_reach_the_sampler_and_the_vae(frames):
    unet, vae, text = _models()
    seen_frames, vae_calls = [], []

    def recording(x, t, c):
        seen_frames.append(x.shape[2])
        return unet(x, t, c)

    vae.vae.decoder.register_forward_pre_hook(lambda m, inputs: vae_calls.append(inputs[0].shape[0]) and None)
    memory = MemoryOptions(window=8, overlap=2, window_batch=1, vae_chunk=6)
    out = pipeline.generate_video(recording, vae, text, frames, "a person", steps=1, memory=memory)
    assert out.shape == frames.shape
    assert seen_frames == [8, 8, 8]  # 20 frames in windows of 8 overlapping by 2: starts 0, 6, 12
    assert vae_calls == [6, 6, 6, 2]
    with pytest.raises(pipeline.PipelineError, match="vae_chunk"):
        MemoryOptions(vae_chunk=0)


def test_a_graphed_unet_is_moved_and_a_compiled_one_stays():
    from amg_model.model.fast import FastUNet

    graphed = FastUNet(_models()[0].unet, dtype=torch.float32, mode="cuda_graph")
    compiled = FastUNet(_models()[0].unet, dtype=torch.float32, mode="compile")
    assert pipeline._movable_module(graphed) is graphed.unet  # graphs are keyed by weight addresses
    assert pipeline._movable_module(compiled) is None
