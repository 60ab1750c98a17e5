"""A ``package.module:factory`` for the CLI tests (``--model model_kind_helpers:tiny_classifier``) and the
other four kinds of the same weights: a checkpoint, an ONNX file, a TorchScript file and the URL of an
in-process ``bbdefense serve`` app (uvicorn in a thread)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

SPLIT_SEED = 3
SHAPE = (1, 28, 28)
FACTORY = "model_kind_helpers:tiny_classifier"


def tiny_classifier() -> nn.Module:
    """A seeded, untrained SmallCNN on MNIST-shaped images whose answers depend on the image (zero biases, a
    large head). It declares what a checkpoint would record: its input shape, dataset, split seed, arch."""
    from bbdefense.models.zoo import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build_model("smallcnn", num_classes=10, in_channels=1, image_size=28, mean=[0.1307], std=[0.3081])
    with torch.no_grad():
        for name, prm in module.named_parameters():
            if name.endswith("bias"):
                prm.zero_()
        module.head.weight.mul_(30)
    module.input_shape = SHAPE
    module.dataset = "mnist5k"
    module.split_seed = SPLIT_SEED
    module.arch = "smallcnn"
    return module.eval()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def not_a_module() -> int:
    return 3


def write_kinds(folder: Path) -> dict[str, str]:
    """The same weights as a checkpoint (recording split seed 3), an ONNX file and a TorchScript file (with its
    input-shape sidecar); returns kind -> spec, the factory included (the URL is :func:`serve_in_thread`'s)."""
    from bbdefense.models import CheckpointMeta, export_onnx, save_checkpoint

    module = tiny_classifier()
    kw = {"num_classes": 10, "in_channels": 1, "image_size": 28, "mean": [0.1307], "std": [0.3081]}
    ck = folder / "ck"
    save_checkpoint(ck, module, CheckpointMeta(arch="smallcnn", arch_kwargs=kw, dataset="mnist5k", num_classes=10,
                                               input_shape=list(SHAPE), mean=[0.1307], std=[0.3081],
                                               train={"split": "owner_train", "split_seed": SPLIT_SEED, "epochs": 1}))
    export_onnx(module, folder / "m.onnx", SHAPE)
    torch.jit.save(torch.jit.trace(module, torch.zeros(2, *SHAPE)), str(folder / "m.pt"))
    (folder / "m.json").write_text('{"input_shape": [1, 28, 28]}')
    return {"checkpoint": str(ck), "onnx": str(folder / "m.onnx"), "torchscript": str(folder / "m.pt"),
            "factory": FACTORY}


@contextmanager
def serve_in_thread(checkpoint: str, db: Path) -> Iterator[str]:
    """``bbdefense serve --model CHECKPOINT --output logits`` (open API) as uvicorn in a thread of this process;
    yields its URL."""
    import uvicorn

    from bbdefense.models import load_blackbox
    from bbdefense.serve import create_app

    app = create_app(load_blackbox(checkpoint, output="logits"), db_path=db, synchronous="NORMAL")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if time.monotonic() - t0 > 30 or not thread.is_alive():
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.store.close()
