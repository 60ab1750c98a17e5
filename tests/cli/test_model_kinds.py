"""One resolver for ``--model`` (issue 15 item 5): every command that takes a model runs with every kind it
supports (a checkpoint, an ONNX file, a TorchScript file, the URL of a bbdefense server, a
``package.module:factory``) and gives the same result for the same weights; a kind it cannot use is refused
in one line naming the command, the kind and the kinds it accepts, before anything is written.

The five kinds hold the same seeded weights (``model_kind_helpers``); the checkpoint records split seed 3,
the factory declares it, the other three are given ``--split-seed 3 --dataset mnist5k``. Settings are tiny.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bbdefense.cli import main

ALL = ("checkpoint", "onnx", "torchscript", "url", "factory")
MODULE = ("checkpoint", "torchscript", "factory")
RECORDS_SPLIT = ("checkpoint", "factory")  # the kinds whose split seed the command reads from the model


def _rows(name: str) -> Callable[[Path, str], Any]:
    def read(out: Path, _stdout: str) -> Any:
        rows = [json.loads(line) for line in (out / "rows" / f"{name}.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("seconds",)} for r in rows]
    return read


def _stdout(drop: str = r"^wrote ") -> Callable[[Path, str], Any]:
    def read(_out: Path, stdout: str) -> Any:
        lines = [ln for ln in stdout.splitlines() if ln.strip() and not re.search(drop, ln)]
        return [re.sub(r"\(\d+(\.\d+)?s\)", "", ln).strip() for ln in lines]
    return read


def _metrics(out: Path, *keys: str) -> dict[str, Any]:
    metrics = json.loads((out / "record.json").read_text())["metrics"]
    return {k: metrics[k] for k in keys}


def _attack_rows(out: Path, stdout: str) -> Any:
    return [{k: r[k] for k in ("idx", "label", "success", "queries")} for r in _rows("attack")(out, stdout)]


# command -> (args, kinds it runs with, result extractor). MODEL is replaced by the spec, OUT by a folder.
COMMANDS: dict[str, tuple[list[str], tuple[str, ...], Callable[[Path, str], Any]]] = {
    "predict": (["predict", "--model", "MODEL", "--input", "IMAGES", "--output", "logits"], ALL, _stdout()),
    "attack": (["attack", "--model", "MODEL", "--attack", "square", "-n", "1", "--max-queries", "10", "--out", "OUT",
                "--no-progress"], ALL, _attack_rows),
    "attack-white": (["attack", "--model", "MODEL", "--attack", "pgd", "-n", "1", "--max-queries", "2", "--out", "OUT",
                      "--no-progress"], MODULE, _attack_rows),
    "certify": (["certify", "--model", "MODEL", "-n", "2", "--n0", "10", "--n", "40", "--norm", "l2", "--clip",
                 "--out", "OUT", "--no-progress"], ALL, _rows("certify")),
    "steal": (["steal", "--model", "MODEL", "--budget", "40", "--epochs", "1", "--eval-split", "test",
               "--out", "OUT/stolen", "--no-progress"], ALL,
              lambda _o, s: re.findall(r"victim queries \d+|  accuracy \S+ \(victim", s)),
    "distill": (["distill", "--model", "MODEL", "--budget", "40", "--epochs", "1", "--augment", "",
                 "--eval-budget", "20", "--surrogate", "lenet", "--out", "OUT", "--no-progress"], ALL,
                lambda out, _s: _metrics(out, "distill.surrogate_accuracy", "distill.target_accuracy",
                                         "distill.fidelity", "distill.new_queries")),
    "ducd": (["defend", "ducd", "--model", "MODEL", "--budget", "40", "--epochs", "1", "--norms", "l2", "--sigmas",
              "0.25", "-n", "2", "--n0", "10", "--n", "20", "--finetune-epochs", "1", "--out", "OUT",
              "--no-progress"], ALL, lambda _o, s: [ln for ln in s.splitlines() if ".score" in ln]),
    "zo-ae-ds": (["defend", "zo-ae-ds", "--model", "MODEL", "--variant", "rs", "--n-test", "2", "--n0", "10", "--n",
                  "20", "--out", "OUT", "--no-progress"], ALL, _rows("certify")),
    "zo-ae-ds-fo": (["defend", "zo-ae-ds", "--model", "MODEL", "--variant", "fo-ds", "--epochs", "1", "--n-train",
                     "4", "--batch-size", "4", "--n-test", "1", "--n0", "5", "--n", "10", "--out", "OUT",
                     "--no-progress"], MODULE, _rows("certify")),
    "irs": (["defend", "irs", "--surrogate", "MODEL", "--model", "CHECKPOINT", "--epochs", "1", "--n-train", "8",
             "--width", "4", "--n-test", "2", "--n0", "10", "--n", "20", "--out", "OUT", "--no-progress"], MODULE,
            _rows("certify")),
    "irs-model": (["defend", "irs", "--surrogate", "CHECKPOINT", "--model", "MODEL", "--epochs", "1", "--n-train",
                   "8", "--width", "4", "--n-test", "2", "--n0", "10", "--n", "20", "--out", "OUT", "--no-progress"],
                  ALL, _rows("certify")),
    "defend-rnd": (["defend", "rnd", "--model", "MODEL", "--nu", "0.05", "--n-test", "50", "--passes", "2"], MODULE,
                   _stdout()),
    "evaluate": (["evaluate", "--model", "MODEL", "-d", "rnd:nu=0.05", "--attacks", "square", "--decision-attacks",
                  "", "--eot", "", "--budgets", "10", "--n", "2", "--n-clean", "20", "--passes", "1", "--out", "OUT",
                  "--no-progress"], MODULE, _stdout()),
    "privacy": (["privacy", "--model", "MODEL", "--arch", "smallcnn", "-n", "20", "--sources", "same", "--budget",
                 "40", "--epochs", "1", "--n-smooth", "2", "--overfit-n", "0", "--no-shadow", "--n-boot", "20",
                 "--out", "OUT", "--no-progress"], MODULE, _stdout()),
    "export-onnx": (["export-onnx", "--model", "MODEL", "--out", "OUT/x.onnx"], ("checkpoint", "factory"),
                    lambda out, _s: np.round(_onnx_logits(out / "x.onnx"), 4).tolist()),
    "serve": (["serve", "--model", "MODEL", "--output", "logits", "--db", "OUT/state.sqlite3", "--port", "PORT"],
              ("checkpoint", "onnx", "torchscript", "factory"), lambda _o, _s: _served_logits()),
    "info": (["info", "--model", "MODEL"], ALL, lambda _o, s: {k: v for k, v in json.loads(s).items()
                                                               if k in ("num_classes", "input_shape")}),
}
# what a command that refuses a kind says (the typed error of the resolver, or serve's)
NEEDS_MODULE = {"attack-white": "attack --attack pgd", "zo-ae-ds-fo": "defend zo-ae-ds --variant fo-ds",
                "irs": "defend irs --surrogate", "defend-rnd": "defend rnd", "evaluate": "evaluate",
                "privacy": "privacy", "export-onnx": "export-onnx", "serve": "serve"}

_SERVED: list[Any] = []


def _images() -> np.ndarray:
    from bbdefense.data import load_dataset, make_splits

    return make_splits(load_dataset("mnist5k"), seed=3).test.x[:4].numpy()


def _onnx_logits(path: Path) -> np.ndarray:
    import torch

    from bbdefense.models.backends import OnnxBackend

    return OnnxBackend(path).forward(torch.from_numpy(_images())).numpy()


def _served_logits() -> Any:
    import torch
    from fastapi.testclient import TestClient

    from bbdefense.serve import HttpBlackBox

    app = _SERVED.pop()
    with TestClient(app) as client:
        out = HttpBlackBox("http://testserver", client=client)(torch.from_numpy(_images()))
    app.state.store.close()
    return np.round(out.numpy(), 4).tolist()


def _run(name: str, kind: str, kinds: dict[str, str], tmp: Path, monkeypatch, capsys) -> tuple[int, str, str, Path]:
    args, _, _ = COMMANDS[name]
    out = tmp / f"{name}-{kind}"
    images = tmp / "images.npy"
    np.save(images, _images())
    argv = [a.replace("OUT", str(out)) for a in args]
    argv = [kinds[kind] if a == "MODEL" else kinds["checkpoint"] if a == "CHECKPOINT" else str(images)
            if a == "IMAGES" else a for a in argv]
    if "PORT" in argv:
        from model_kind_helpers import free_port

        argv[argv.index("PORT")] = str(free_port())
        import bbdefense.serve as serve_mod

        monkeypatch.setattr(serve_mod, "run_server", lambda app, **kw: _SERVED.append(app))
    takes_data = name not in ("predict", "export-onnx", "serve", "info")
    if takes_data and kind not in RECORDS_SPLIT and name not in ("irs",):
        argv += ["--split-seed", "3", "--dataset", "mnist5k"]
    monkeypatch.chdir(tmp)
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err, out


_REFERENCE: dict[str, Any] = {}


@pytest.mark.parametrize(("name", "kind"), [(n, k) for n in COMMANDS for k in ALL])
def test_every_command_takes_every_kind_it_supports(name: str, kind: str, model_kinds: dict[str, str],
                                                    tmp_path_factory, monkeypatch, capsys) -> None:
    _, supported, result = COMMANDS[name]
    tmp = tmp_path_factory.mktemp(name)
    if kind not in supported:
        code, _, err, out = _run(name, kind, model_kinds, tmp, monkeypatch, capsys)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1, err
        assert NEEDS_MODULE[name] in lines[0] and f"{model_kinds[kind]} is " in lines[0], lines[0]
        assert "accepts:" in lines[0] and all(k in lines[0].split("accepts:")[1] for k in supported if k != "url")
        assert not out.exists(), "a refused command wrote its run directory"
        return
    if name not in _REFERENCE:  # the checkpoint's result, computed once
        code, stdout, err, out = _run(name, "checkpoint", model_kinds, tmp_path_factory.mktemp(name + "-ref"),
                                      monkeypatch, capsys)
        assert code == 0, err
        _REFERENCE[name] = result(out, stdout)
    if kind == "checkpoint":
        return
    code, stdout, err, out = _run(name, kind, model_kinds, tmp, monkeypatch, capsys)
    assert code == 0, err
    got, want = result(out, stdout), _REFERENCE[name]
    if name == "predict":  # logits: onnxruntime agrees with torch within 1e-4
        g = np.array([json.loads(ln)["logits"] for ln in got])
        w = np.array([json.loads(ln)["logits"] for ln in want])
        np.testing.assert_allclose(g, w, atol=1e-4)
        return
    assert got == want  # onnxruntime's ~1e-6 differences from torch change no decision at these settings


def test_target_stays_a_deprecated_alias_of_model(model_kinds: dict[str, str], tmp_path: Path, capsys) -> None:
    code = main(["distill", "--target", model_kinds["checkpoint"], "--budget", "10", "--epochs", "1", "--augment", "",
                 "--eval-budget", "5", "--surrogate", "lenet", "--out", str(tmp_path / "d"), "--no-progress"])
    assert code == 0, capsys.readouterr().err


@pytest.mark.parametrize(("spec", "msg"), [
    ("http:/127.0.0.1:8000", "looks like a URL with one slash; write http://127.0.0.1:8000"),
    ("ftp://host/m", "unsupported URL scheme 'ftp'"),
    ("http://:8000", "the URL names no host"),
    ("NOWHERE/ck", "model not found: NOWHERE/ck"),
    ("NOWHERE/m.onnx", "ONNX file not found"),
    ("NOWHERE/m.pt", "TorchScript file not found"),
    ("README.md", "unknown model file suffix '.md'"),
    ("no_such_pkg.mod:make", "module 'no_such_pkg.mod' cannot be imported"),
    ("model_kind_helpers:nothing", "module 'model_kind_helpers' has no attribute 'nothing'"),
    ("model_kind_helpers:SHAPE", "'SHAPE' is a tuple, not a callable factory"),
    ("model_kind_helpers:not_a_module", "the factory returned a int, not a torch nn.Module"),
])
def test_every_bad_spec_is_one_input_error(spec: str, msg: str, tmp_path: Path, monkeypatch, capsys) -> None:
    from bbdefense.errors import InputError
    from bbdefense.models import model_source

    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("not a model")
    with pytest.raises(InputError, match=re.escape(msg)):
        model_source(spec).blackbox()
    for cmd in (["predict", "--input", "x.npy"], ["certify"], ["evaluate"], ["steal"]):
        code = main([cmd[0], "--model", spec, *cmd[1:]])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and msg in err[0], err


def test_factory_without_input_shape_is_refused(tmp_path: Path, monkeypatch) -> None:
    from bbdefense.errors import InputError
    from bbdefense.models import model_source

    (tmp_path / "bare_factory_mod.py").write_text(
        "import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))\n")
    monkeypatch.chdir(tmp_path)  # the current folder is tried when the import fails (as uvicorn app:app does)
    with pytest.raises(InputError, match=r"give the module \(or the factory\) an input_shape attribute"):
        model_source("bare_factory_mod:make").blackbox()
