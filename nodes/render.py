"""Rendering the avatars (AMG's conditioning video) and a diagram of the shot."""

from __future__ import annotations

from comfy_api.latest import io

from amg_model.render.appearance import PRESETS
from amg_model.render.avatars import render_avatars
from amg_model.render.display import depth_to_rgb, normals_to_rgb
from amg_model.render.preview import render_scene_preview
from amg_model.render.shading import DEFAULT_LIGHTING

from . import edges
from . import types as t
from .inputs import size_override_inputs


class AMGRenderAvatars(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_RenderAvatars",
            display_name="AMG Render Avatars",
            category="AMG/avatar",
            description="Renders every person of the motion through the camera: the avatar video that "
            "conditions AMG, with its mask, depth and normals.",
            inputs=[
                t.BodyModel.Input("body_model", tooltip="Body model that poses the motion."),
                t.Motion.Input("motion", tooltip="Persons over F frames."),
                t.Camera.Input("camera", tooltip="Camera over the same F frames."),
                *size_override_inputs(
                    "Output width in pixels (multiple of 8); 0 uses the camera's.",
                    "Output height in pixels (multiple of 8); 0 uses the camera's.",
                ),
                io.Combo.Input(
                    "appearance",
                    options=list(PRESETS),
                    default="casual",
                    tooltip="Clothing colours; every person gets a different variant.",
                ),
                io.Int.Input("supersample", default=2, min=1, max=4, tooltip="Anti-aliasing factor."),
                io.Boolean.Input(
                    "lighting", default=True, tooltip="Lit (as AMG was trained) or flat colours."
                ),
            ],
            outputs=[
                io.Image.Output(display_name="avatar_video", tooltip="Conditioning video [F, H, W, 3]."),
                io.Mask.Output(display_name="mask", tooltip="Union of the persons' coverage."),
                io.Image.Output(display_name="depth", tooltip="Inverse depth, near is bright."),
                io.Image.Output(display_name="normals", tooltip="Camera-frame normals as colours."),
            ],
        )

    @classmethod
    def execute(
        cls, body_model, motion, camera, width=0, height=0, appearance="casual", supersample=2, lighting=True
    ) -> io.NodeOutput:
        size = (width, height) if width and height else None
        out = render_avatars(
            body_model,
            motion,
            camera,
            appearance=appearance,
            size=size,
            supersample=supersample,
            device=edges.compute_device(),
            progress=edges.Progress(camera.num_frames),
            lighting=DEFAULT_LIGHTING if lighting else None,
        )
        return io.NodeOutput(
            edges.to_image(out.image),
            edges.to_mask(out.mask),
            edges.to_image(depth_to_rgb(out.depth)),
            edges.to_image(normals_to_rgb(out.normals)),
        )


class AMGPreviewScene(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_PreviewScene",
            display_name="AMG Preview Scene",
            category="AMG/avatar",
            description="Top and side views of the camera path (blue first frame, red last) and the persons.",
            inputs=[
                t.Motion.Input("motion", tooltip="The persons."),
                t.Camera.Input("camera", tooltip="The camera."),
                t.BodyModel.Input("body_model", optional=True, tooltip="Draws skeletons when given."),
                io.Int.Input(
                    "size", default=512, min=64, max=4096, step=8, tooltip="Image width; height is half."
                ),
            ],
            outputs=[io.Image.Output(display_name="image")],
        )

    @classmethod
    def execute(cls, motion, camera, body_model=None, size=512) -> io.NodeOutput:
        return io.NodeOutput(
            edges.to_image(render_scene_preview(motion, camera, body_model=body_model, size=size))
        )
