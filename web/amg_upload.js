// Upload buttons for the AMG file loaders. ComfyUI's frontend has upload buttons for images, videos
// and audio only; motion, keypoint and camera files are sent to the same endpoint, which stores any
// file in the input folder, and then selected in the node's file list. The button is not serialised,
// so saved workflows keep the same widget values.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const UPLOADS = {
  AMG_LoadMotion: { widget: "motion_file", accept: ".npz,.pt,.pth,.pkl,.pickle,.json" },
  AMG_LoadPoseKeypoints: { widget: "keypoints_file", accept: ".json" },
  AMG_LoadCamera: { widget: "camera_file", accept: ".txt,.json" },
};

async function upload(file) {
  const body = new FormData();
  body.append("image", file); // the endpoint's field name; the file is stored as it is
  body.append("type", "input");
  const resp = await api.fetchApi("/upload/image", { method: "POST", body });
  if (resp.status !== 200) {
    throw new Error(`upload of ${file.name} failed: ${resp.status} ${resp.statusText}`);
  }
  const { name, subfolder } = await resp.json();
  return subfolder ? `${subfolder}/${name}` : name;
}

app.registerExtension({
  name: "amg.fileUpload",
  async nodeCreated(node) {
    const spec = UPLOADS[node.comfyClass];
    const combo = spec && node.widgets?.find((w) => w.name === spec.widget);
    if (!combo) return;
    const chooser = document.createElement("input");
    Object.assign(chooser, { type: "file", accept: spec.accept });
    chooser.style.display = "none";
    document.body.append(chooser);
    chooser.onchange = async () => {
      const file = chooser.files?.[0];
      chooser.value = "";
      if (!file) return;
      try {
        const value = await upload(file);
        if (!combo.options.values.includes(value)) combo.options.values.push(value);
        combo.value = value;
        combo.callback?.(value);
      } catch (err) {
        alert(err.message);
      }
    };
    const button = node.addWidget("button", "choose file to upload", null, () => chooser.click(), {
      serialize: false,
    });
    button.serialize = false;
    const onRemoved = node.onRemoved;
    node.onRemoved = function () {
      chooser.remove();
      return onRemoved?.apply(this, arguments);
    };
  },
});
