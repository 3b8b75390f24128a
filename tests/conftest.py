"""Shared test settings: fixed torch threads, deterministic defaults."""

import os

import torch

torch.set_num_threads(int(os.environ.get("AMG_TEST_THREADS", "2")))
torch.set_num_interop_threads(1)
