"""The two sides of the peer comparison, as they run inside a `keras_se.bench.peer.LiveWorker`.

`serve` reads one JSON request per line (``{"op": "prepare", ...}``) and answers each with one
``JSON`` line; `KerasSide` (keras_se, in a TensorFlow child or in-process) and `TorchSide`
(timm, in a child under a Python with torch and timm) prepare the same model from the same
weights and time one step at a time.
"""

from __future__ import annotations

import gc
import json
import sys
import time

import keras
import numpy as np

from keras_se import speed
from keras_se.bench.harness import compiled_forward, compiled_train_step
from keras_se.bench.process import WORKER_RESULT_PREFIX


class KerasSide:
    """The keras_se side of the peer comparison (runs in a `LiveWorker` child, or in-process)."""

    def __init__(self, threads, device="cpu"):
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
            except RuntimeError:  # TensorFlow already initialised (in-process use): keep its pools
                pass
        self.steps = {}

    def versions(self):
        return {"keras": keras.__version__, "keras_backend": keras.backend.backend()}

    def prepare(self, key, *, model, weights, inputs, labels, precision, train, learning_rate, **_):
        from keras_se.models import pretrained

        x, y = np.load(inputs), np.load(labels)
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
        try:
            built = pretrained.load_reference_model(
                weights,
                model=model,
                input_shape=x.shape[1:],
                # logits, as timm's; training uses the softmax + cross-entropy of the SE-cost figures
                classifier_activation="softmax" if train else None,
            )
        finally:
            keras.config.set_dtype_policy(previous)
        built = speed.accelerate(built)  # as keras-se train runs it
        if train:
            step = compiled_train_step(built, learning_rate=learning_rate)
            self.steps[key] = lambda: step(x, y)
        else:
            forward = compiled_forward(built)
            self.steps[key] = lambda: forward(x)
        return {}

    def logits(self, key, path):
        np.save(path, np.asarray(self.steps[key](), dtype="float32"))
        return {}

    def time(self, key):
        start = time.perf_counter()
        self.steps[key]()
        return {"seconds": time.perf_counter() - start}

    def drop(self):
        self.steps.clear()
        gc.collect()
        return {}


class TorchSide:
    """The timm side of the peer comparison (a `LiveWorker` child under a Python with torch + timm)."""

    def __init__(self, threads, device="cpu"):
        import torch

        torch.set_num_threads(threads)
        # TensorFlow flushes denormals to zero in its thread pools; PyTorch does not by default,
        # and random weights can make denormal activations (1.14 -> 0.80 s a legacy_seresnet50
        # forward at 64x64, batch 2, on the loaded 2-core VM).
        torch.set_flush_denormal(True)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already set (only possible before any parallel work)
            pass
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.torch, self.device, self.steps = torch, device, {}

    def versions(self):
        import timm

        return {
            "torch": self.torch.__version__,
            "timm": timm.__version__,
            "torch_threads": self.torch.get_num_threads(),
            "device": self.device,
        }

    def write_weights(self, timm_name, path, seed=0):
        """timm's random initialisation (seed ``seed``), BatchNorm statistics randomised, as safetensors."""
        import timm
        from safetensors.torch import save_file

        torch = self.torch
        torch.manual_seed(seed)
        model = timm.create_model(timm_name, pretrained=False)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.normal_(0.0, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0.0, 0.1)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
        return {"parameters": sum(p.numel() for p in model.parameters())}

    def prepare(
        self,
        key,
        *,
        model,
        weights,
        inputs,
        labels,
        precision,
        train,
        learning_rate,
        layout="nchw",
        compile=False,
    ):
        import contextlib

        import timm
        from safetensors.torch import load_file

        torch = self.torch
        net = timm.create_model(model, pretrained=False)
        net.load_state_dict(load_file(weights))
        x = torch.from_numpy(np.load(inputs)).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
        y = torch.from_numpy(np.load(labels))
        net, x, y = net.to(self.device), x.to(self.device), y.to(self.device)
        if layout == "channels_last":
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        if compile:
            net = torch.compile(net)

        def autocast():
            if precision == "bfloat16":
                return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)
            return contextlib.nullcontext()

        if train:
            net.train()
            optimizer = torch.optim.SGD(net.parameters(), lr=learning_rate, momentum=0.9)

            def step():
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    loss = torch.nn.functional.cross_entropy(net(x), y)
                loss.backward()
                optimizer.step()
                return loss.item()

        else:
            net.eval()

            def step():
                with torch.inference_mode(), autocast():
                    return net(x).float().cpu().numpy()

        self.steps[key] = step
        return {}

    def logits(self, key, path):
        np.save(path, self.steps[key]())
        return {}

    def time(self, key):
        start = time.perf_counter()
        self.steps[key]()
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()
        return {"seconds": time.perf_counter() - start}

    def drop(self):
        self.steps.clear()
        gc.collect()
        return {}


def serve(side, *, threads, device="cpu", stdin=None, stdout=None):
    """The loop of a `LiveWorker` child: one JSON request per line in, one ``JSON`` reply line out."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    server = (KerasSide if side == "keras" else TorchSide)(threads, device)
    for line in stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "quit":
            break
        try:
            reply = getattr(server, op)(**request)
        except Exception as err:  # noqa: BLE001 - reported to the parent, which raises
            reply = {"error": f"{type(err).__name__}: {err}"}
        stdout.write(WORKER_RESULT_PREFIX + json.dumps(reply) + "\n")
        stdout.flush()
    return 0
