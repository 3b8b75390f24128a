"""Checks of nodes/model.py inside the real ComfyUI modules (no server), run with ComfyUI's Python.

    python model_inprocess.py COMFYUI_DIR REPO

Exits non-zero with a message when a check fails. Checked: the text conditioning reaches the
model's device once, in ``extra_conds`` (not copied from the CPU at every step); a positive and a
negative with one avatar video reach the UNet as copies of one video (its first layers run once), with
two avatar videos they do not; and unloading the MODEL (ComfyUI's detach) releases the CUDA graphs of
the diffusion model, while swapping the sampler's clone of the MODEL for another (weights kept on the
device) keeps them.
"""

from __future__ import annotations

import sys


def main(comfy_dir: str, repo: str) -> None:
    sys.path[:0] = [repo, f"{repo}/bench"]
    import torch
    from comfy_bench import import_comfy  # ComfyUI in-process, unusable optional packages stubbed

    torch.set_num_threads(1)
    comfy, model_mod, _ = import_comfy(comfy_dir, cpu=True)
    mm = comfy.model_management
    from amg_model.model.fast import GraphedForward
    from amg_model.model.tiny import tiny_unet

    unet = tiny_unet()
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    patcher = model_mod.wrap_unet(unet, torch.float32, None, load_device, offload_device)
    diffusion = patcher.model.diffusion_model

    # the text conditioning is put on the conds' device ("meta" here: visibly not the CPU)
    text = torch.randn(1, 77, unet.config.cross_attention_dim)
    avatar = torch.randn(4, 4, 8, 8)
    conds = patcher.model.extra_conds(
        cross_attn=text, concat_latent_image=avatar, noise=avatar, device=torch.device("meta")
    )
    assert conds["c_crossattn"].cond.device.type == "meta", "the text conditioning stayed on the CPU"

    def plant_graph() -> GraphedForward:  # a graph cache holding one (stand-in) graph
        graphed = GraphedForward(lambda x: x, None, capture=lambda fn, args: fn)
        graphed(torch.zeros(1))
        diffusion._graphed = graphed
        return graphed

    other = patcher.model.extra_conds(
        cross_attn=text, concat_latent_image=avatar, noise=avatar, device=torch.device("meta")
    )
    assert other["amg_avatar"].cond is conds["amg_avatar"].cond, "one avatar, two device copies"

    copies = []
    run_unet = diffusion._run_unet
    diffusion._run_unet = lambda video, t, text, n=1: copies.append(n) or run_unet(video, t, text, n)

    noise = torch.randn_like(avatar)

    def sample(negative_avatar):
        positive = [[text, {"concat_latent_image": avatar}]]
        negative = [[torch.zeros_like(text), {"concat_latent_image": negative_avatar}]]
        return comfy.sample.sample(
            patcher, noise, 2, 3.0, "ddim", "ddim_uniform", positive, negative,
            torch.zeros_like(avatar), denoise=1.0, disable_pbar=True, seed=0,
        )  # fmt: skip

    graphed = plant_graph()
    out = sample(avatar)
    assert out.shape == avatar.shape and torch.isfinite(out).all(), "sampling failed"
    assert len(graphed) == 0, "the CPU path (no graphs possible) kept the graphs"
    assert copies == [2, 2], f"one avatar video under guidance: expected copies [2, 2], got {copies}"
    copies.clear()
    again = sample(avatar.clone())  # equal values, but another video as far as the model can tell
    assert copies == [1, 1], f"two avatar videos: expected no copies, got {copies}"
    assert torch.allclose(again, out, atol=1e-5), "the same job gave another result"
    diffusion._run_unet = run_unet
    graphed = plant_graph()
    mm.load_models_gpu([patcher])  # replaces the sampler's clone of the patcher: weights stay in place
    assert len(graphed) == 1, "graphs released while the model stays loaded"
    mm.unload_all_models()
    assert len(graphed) == 0, "unloading the MODEL left its CUDA graphs (and their memory) behind"
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
