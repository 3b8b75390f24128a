"""The AMG networks and their files: UNet (diffusers UNet3DConditionModel, 8 input channels),
OpenCLIP ViT-H-14 text encoder, SD 2.1 KL-f8 VAE.

Modules:
    config      UNetConfig, architecture inference from tensor shapes
    convert     original (VGen) key layout <-> diffusers layout, exact LoRA merge
    unet        AMGUNet wrapper, build_unet(config, diffusers state dict)
    checkpoint  safe file reading, load_unet, convert_checkpoint
    text        TextEncoder, load_text_encoder, tiny_text_encoder
    vae         VideoVAE, load_vae, tiny_vae
    tiny        tiny random-weight models and original-layout test checkpoints
    channels_last  the UNet forward with channels-last activations (the GPU default)
    attention   multi-head attention on token arrays (torch SDPA, flash backend)
    short_attention  attention over a few frames as one Triton kernel
    fused       Triton kernels (GroupNorm, GEGLU, frame/pixel transposes) and their torch versions
    fast        FastUNet: precision, CUDA graphs (GraphedForward), compilation
    runtime     prepare_unet: the settings for a device
"""
