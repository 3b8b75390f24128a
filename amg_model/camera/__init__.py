"""Cameras: the Camera type and the ways to make and exchange one.

Modules: ``camera`` (Camera, look_at, field-of-view helpers), ``presets`` (named moves),
``keyframes`` (JSON keyframes), ``compose`` (retime, reverse, anchor, concatenate),
``cameractrl`` (CameraCtrl / RealEstate10K poses), ``serialize`` (lossless JSON),
``easing`` and ``interpolation`` (shared maths). Import from the modules; this package file
stays empty so that importing the Camera type stays cheap.
"""
