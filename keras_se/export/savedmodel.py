"""The SavedModel: the functions behind its signatures, written, reloaded and checked.

Signatures (all inputs are named ``image``, channels last, dynamic batch): ``serving_default``
(``uint8`` images), ``serving_preprocessed`` (float32, already preprocessed) and, with
``with_excitations``, ``excitations``. Every signature checks its image batch inside the
graph, where TF Serving requests arrive (`ServingFunctions.check_image`): the inputs are
declared with unknown shape so that every request reaches that check, and
`describe_signatures` reports the shapes it accepts. The network never runs on an empty
batch; images get *the* training preprocessing (`keras_se.data.normalize`, and with
``dynamic_size`` the evaluation pipeline's `keras_se.data.resize_and_crop`); outputs are
float32 probabilities, a softmax added when the classifier outputs logits. ``excitations``
returns the gate vector ``s`` of Hu et al. (2018), Section 3.2, of every SE layer.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_se.data import normalize, resize_and_crop

SERVING_SIGNATURE = "serving_default"
PREPROCESSED_SIGNATURE = "serving_preprocessed"
EXCITATIONS_SIGNATURE = "excitations"

#: Keras vs reloaded SavedModel, on the sample images, by compute dtype.
_VERIFY_ATOL = {"float32": 1e-5, "float16": 1e-2, "bfloat16": 1e-2}


class ServingFunctions:
    """The Python functions behind the signatures (traced by ExportArchive)."""

    def __init__(self, model, preprocessing, plan):
        import tensorflow as tf

        self.tf = tf
        self.model = model
        self.preprocessing = preprocessing
        self.plan = plan
        self.image_shape = plan.image_shape
        self.model_shape = plan.model_shape
        self.classes = plan.classes
        self.size = plan.size
        self.resize = plan.resize
        self.top_k = plan.top_k
        self.logits = plan.logits
        self.se_layers = list(plan.se_layers)
        self.gate_inputs = None
        if self.se_layers:
            # Shares the model's layers and weights: the input of each SE block.
            self.gate_inputs = keras.Model(
                model.inputs[0], [layer.input for layer in self.se_layers], name="se_gate_inputs"
            )

    def check_image(self, image, expected, dtype):
        """``image`` after an in-graph check of its shape; static shape ``expected``.

        A batch of another rank, or with other dimensions than ``expected``
        (``[None, H, W, C]``; None = any size >= 1, the batch may be empty) fails with
        ``InvalidArgumentError`` naming ``image``, the expected and the received shape.
        """
        tf = self.tf
        shape = tf.shape(image, out_type=tf.int32)  # (rank,)
        want = tf.constant([-1 if d is None else int(d) for d in expected[1:]], tf.int32)
        # Three values whatever the rank (a wrong rank fails the rank test anyway).
        got = tf.concat([shape, tf.fill([4], -1)], axis=0)[1:4]
        dims_ok = tf.where(tf.equal(want, -1), got >= 1, tf.equal(got, want))
        ok = tf.logical_and(tf.equal(tf.size(shape), 4), tf.reduce_all(dims_ok))
        message = tf.strings.join(
            [
                f"`image` must have shape {_shape_text(expected)} ({dtype}, channels last). "
                "Received: image.shape=[",
                tf.strings.reduce_join(tf.strings.as_string(shape), separator=", "),
                "]",
            ]
        )
        check = tf.debugging.Assert(ok, [message])
        with tf.control_dependencies([check]):
            image = tf.identity(image)
        return tf.ensure_shape(image, expected)

    def unless_empty(self, image, compute, empty):
        """``compute(image)``, or ``empty()`` for a batch of 0 images.

        An empty batch never reaches the network: TensorFlow's CPU convolution returns
        a wrongly shaped result for it (BatchNormalization then fails).
        """
        tf = self.tf
        return tf.cond(tf.shape(image)[0] > 0, lambda: compute(image), empty)

    def probabilities_or_empty(self, image, preprocess):
        def compute(x):
            x = self.preprocess(x) if preprocess else x
            return self.tf.cast(self.model(x, training=False), self.tf.float32)

        return self.unless_empty(
            image, compute, lambda: self.tf.zeros([0, self.classes], self.tf.float32)
        )

    def preprocess(self, image):
        """uint8 images → float32 model inputs, exactly `keras_se.data.normalize`."""
        x = image
        if self.resize:
            # The evaluation pipeline's own resize (keras_se.data), compiled into the graph.
            x = resize_and_crop(x, self.preprocessing, self.size)
        return normalize(x, self.preprocessing)

    def head(self, outputs):
        tf = self.tf
        outputs = tf.cast(outputs, tf.float32)  # mixed precision: float16 → float32
        probabilities = tf.nn.softmax(outputs, axis=-1) if self.logits else outputs
        result = {
            "probabilities": tf.identity(probabilities, name="probabilities"),
            "class_id": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        }
        if self.top_k:
            values, indices = tf.math.top_k(probabilities, k=self.top_k)
            result["top_k_probabilities"] = values
            result["top_k_class_ids"] = tf.cast(indices, tf.int64)
        return result

    def serve(self, image):
        image = self.check_image(image, self.image_shape, "uint8")
        return self.head(self.probabilities_or_empty(image, preprocess=True))

    def serve_preprocessed(self, image):
        image = self.check_image(image, self.model_shape, "float32, preprocessed")
        return self.head(self.probabilities_or_empty(image, preprocess=False))

    def excitations(self, image):
        tf = self.tf
        image = self.check_image(image, self.image_shape, "uint8")

        def compute(x):
            features = self.gate_inputs(self.preprocess(x), training=False)
            if not isinstance(features, (list, tuple)):
                features = [features]
            return [
                tf.cast(layer.excitation(f), tf.float32)
                for layer, f in zip(self.se_layers, features)
            ]

        def empty():
            return [tf.zeros([0, layer.channels], tf.float32) for layer in self.se_layers]

        gates = self.unless_empty(image, compute, empty)
        return {layer.name: gate for layer, gate in zip(self.se_layers, gates)}


def _shape_text(shape):
    """``[None, 32, 32, 3]`` → ``"[batch, 32, 32, 3]"``; other Nones read ``any``."""
    dims = ["batch"] + ["any" if d is None else str(d) for d in shape[1:]]
    return "[" + ", ".join(dims) + "]"


def write_archive(fns, path):
    """Writes the SavedModel of ``fns`` (a `ServingFunctions`) to ``path``.

    The layout `keras.export.ExportArchive` writes for a tracked model (the model's variables
    as ``variables``, ``trainable_variables`` and ``non_trainable_variables``, one function
    per signature), saved with `tf.saved_model.save` directly. ExportArchive traced every
    signature three times (once itself, once more inside the save, whose cache key differs,
    and the model's call once more for Keras's default save signature) and stored every
    weight twice (the Keras variable and the TensorFlow variable under it, restored as two
    buffers by every loader, TF Serving included: keras-team/keras#23553, open). Here each
    signature is traced once and each weight stored once. Measured on 2 CPU cores, before
    → after: CIFAR SE-ResNet-20 at 16x16 5.3 → 2.4-2.7 s; SE-ResNet-50 at 64x64 with
    ``excitations`` 16.2-17.1 → 8.0-8.3 s and 225 → 113 MB of variables (28 M float32
    parameters).
    """
    import tensorflow as tf

    # Unknown shape: every request reaches the in-graph check (see the module docstring).
    uint8_spec = tf.TensorSpec(None, tf.uint8, name="image")
    float_spec = tf.TensorSpec(None, tf.float32, name="image")

    # Named arguments give the signature input key "image".
    def serving_default(image):
        return fns.serve(image)

    def serving_preprocessed(image):
        return fns.serve_preprocessed(image)

    def excitations(image):
        return fns.excitations(image)

    endpoints = [(SERVING_SIGNATURE, serving_default, uint8_spec)]
    endpoints.append((PREPROCESSED_SIGNATURE, serving_preprocessed, float_spec))
    if fns.se_layers:
        endpoints.append((EXCITATIONS_SIGNATURE, excitations, uint8_spec))
    root = tf.__internal__.tracking.AutoTrackable()  # the root ExportArchive saves
    # The model's variables under ExportArchive's names, as the TensorFlow variables the
    # graph reads (`keras.Variable.value`), each saved once.
    model = fns.model
    root.variables = [v.value for v in model.variables]
    root.trainable_variables = [v.value for v in model.trainable_variables]
    root.non_trainable_variables = [v.value for v in model.non_trainable_variables]
    signatures = {}
    for name, fn, spec in endpoints:
        # A concrete function, traced here once: the save and its object graph take it as
        # it is (a tf.function would be traced again inside the save).
        signatures[name] = tf.function(fn, autograph=False).get_concrete_function(spec)
        setattr(root, name, signatures[name])
    tf.saved_model.save(root, path, signatures=signatures)


def verify(path, fns, images):
    """Reloads the written SavedModel, compares it with the Keras model; (signatures, diff)."""
    import tensorflow as tf

    model = fns.model
    loaded = tf.saved_model.load(path)
    served = loaded.signatures[SERVING_SIGNATURE](image=tf.constant(images))
    expected = fns.head(model(fns.preprocess(tf.constant(images)), training=False))
    diff = served["probabilities"].numpy() - expected["probabilities"].numpy()
    max_abs_diff = float(np.max(np.abs(diff)))
    atol = max(_VERIFY_ATOL.get(layer.compute_dtype, 1e-2) for layer in model.layers)
    if not max_abs_diff <= atol:
        raise RuntimeError(
            "The reloaded SavedModel disagrees with the Keras model: max abs difference "
            f"{max_abs_diff:.3g} > {atol:g}."
        )
    return describe_signatures(loaded, fns.plan), max_abs_diff


def describe_signatures(loaded, plan):
    """{signature: {"inputs": {key: (dtype, shape)}, "outputs": {...}}} of a loaded SavedModel.

    Shapes use -1 for unknown dimensions. The ``image`` inputs are declared with unknown
    shape and checked in the graph; their entry is the shape the check accepts.
    """
    checked = {
        SERVING_SIGNATURE: plan.image_shape,
        EXCITATIONS_SIGNATURE: plan.image_shape,
        PREPROCESSED_SIGNATURE: plan.model_shape,
    }
    out = {}
    for key in sorted(loaded.signatures.keys(), key=lambda k: (k != SERVING_SIGNATURE, k)):
        fn = loaded.signatures[key]
        _, kwargs = fn.structured_input_signature
        out[key] = {
            "inputs": {
                k: _spec(v, checked.get(key) if v.shape.rank is None else None)
                for k, v in sorted(kwargs.items())
            },
            "outputs": {k: _spec(v) for k, v in sorted(fn.structured_outputs.items())},
        }
    return out


def _spec(t, shape=None):
    """(dtype name, shape with -1 for unknown) of a tensor spec; ``shape`` overrides its own."""
    if shape is None:
        shape = t.shape.as_list() if t.shape.rank is not None else None
    return (
        t.dtype.name,
        None if shape is None else [-1 if d is None else int(d) for d in shape],
    )
