"""Rendering: avatars of a motion through a camera, as AMG's conditioning video, and previews.

Modules: ``raster`` (render_meshes: the batched rasteriser, RenderOutput), ``zbuffer`` (its
coverage and depth test), ``workers`` (its chunks of frames on several CPU threads), ``shading``
(Lighting, vertex normals), ``appearance`` (Appearance, colour presets by body region),
``avatars`` (render_avatars: pose, colour and render a Motion), ``preview``
(render_scene_preview: top and side views of the camera path and the subjects), ``primitives``
(analytic meshes). Import from the modules; this package file stays empty.
"""
