"""Sampling: the original AMG DDIM sampler with text guidance and temporal windows.

Modules: ``schedule`` (linear_sd tables, DDIM timesteps), ``ddim`` (one step, never calls the model),
``guidance`` (batched classifier-free guidance with the avatar latent), ``windows`` (overlapping
temporal windows and blend weights), ``sample`` (``sample_video``, the loop with a callback).
"""
