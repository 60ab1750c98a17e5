"""The CLI in-process: exit codes, one-line errors, files written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bbdefense.cli import main


def run(capsys, *args):
    code = main(list(args))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["train", "--arch", "nope", "--dataset", "mnist5k"], "unknown architecture 'nope'; choose one of:"),
        (["train", "--arch", "smallcnn", "--dataset", "cifar"], "unknown dataset 'cifar'; choose one of:"),
        (["train", "--arch", "smallcnn", "--dataset", "mnist5k", "--mode", "fancy"], "unknown training mode 'fancy'"),
        (["train", "--arch", "smallcnn", "--dataset", "mnist5k", "--epochs", "0"],
         "'--epochs': must be an integer >= 1, got 0"),
        (["info", "--model", "/nonexistent/ck"], "model not found: /nonexistent/ck"),
        (["export-onnx", "--model", "/nonexistent/ck"], "model not found: /nonexistent/ck"),
        (["report", "/nonexistent/run"], "no record.json in /nonexistent/run"),
        (["train", "--dataset", "mnist5k"], "Missing option '--arch'"),
        (["train", "--arch", "smallcnn", "--dataset", "mnist5k", "--epochs", "x"], "Invalid value for '--epochs'"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
    ],
)
def test_cli_user_errors_are_one_line_exit_2(capsys, args, msg):
    code, _, err = run(capsys, *args)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith("error: ") and msg in line


def test_cli_corrupt_checkpoint(capsys, trained_smallcnn, tmp_path):
    path, _ = trained_smallcnn
    bad = tmp_path / "bad"
    (tmp_path / "bad.json").write_text(path.with_suffix(".json").read_text())
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    code, _, err = run(capsys, "predict", "--model", str(bad), "--input", str(tmp_path / "x.npy"))
    assert code == 2 and "do not match the hash" in one_error_line(err)


def test_cli_nan_input(capsys, trained_smallcnn, tmp_path):
    path, _ = trained_smallcnn
    x = np.full((2, 1, 28, 28), np.nan, dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    code, _, err = run(capsys, "predict", "--model", str(path), "--input", str(tmp_path / "x.npy"))
    assert code == 2 and one_error_line(err) == "error: images contain NaN"


def test_cli_predict_label_and_probs(capsys, trained_smallcnn, mnist_splits, tmp_path):
    path, _ = trained_smallcnn
    np.savez(tmp_path / "x.npz", x=mnist_splits.test.x[:5].numpy())
    code, out, err = run(capsys, "predict", "--model", str(path), "--input", str(tmp_path / "x.npz"))
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["idx"] for r in rows] == list(range(5)) and all(isinstance(r["label"], int) for r in rows)
    assert "5 queries" in err
    code, out, _ = run(capsys, "predict", "--model", str(path), "--input", str(tmp_path / "x.npz"), "--output", "probs",
                       "--top-k", "2")
    probs = [json.loads(line)["probs"] for line in out.splitlines()]
    assert code == 0 and all(sum(p > 0 for p in row) == 2 for row in probs)


def test_cli_export_onnx(capsys, trained_smallcnn, tmp_path):
    path, _ = trained_smallcnn
    code, out, err = run(capsys, "export-onnx", "--model", str(path), "--out", str(tmp_path / "m.onnx"))
    assert code == 0, err
    assert (tmp_path / "m.onnx").is_file() and "max |torch - onnx|" in out


def test_cli_info(capsys, trained_smallcnn):
    code, out, _ = run(capsys, "info")
    assert code == 0 and "smallcnn (classifier)" in out and "mnist5k" in out
    code, out, _ = run(capsys, "info", "--model", str(trained_smallcnn[0]))
    assert code == 0 and json.loads(out)["arch"] == "smallcnn"


def test_cli_help_everywhere(capsys):
    from bbdefense.cli import _register_commands, app

    _register_commands()
    names = [c.name for c in app.registered_commands]
    assert {"info", "train", "export-onnx", "report", "demo", "predict"} <= set(names)
    for name in names:
        code, out, _ = run(capsys, name, "--help")
        assert code == 0 and "Usage" in out


def test_cli_train_writes_checkpoint(capsys, tmp_path):
    code, out, err = run(capsys, "train", "--arch", "smallcnn", "--dataset", "digits", "--epochs", "1", "--out",
                         str(tmp_path / "m"), "--no-progress")
    assert code == 0, err
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["arch"] == "smallcnn" and meta["dataset"] == "digits" and meta["seed"] == 0
    assert meta["input_shape"] == [1, 8, 8] and 0 <= meta["metrics"]["test_accuracy"] <= 1
    assert "wrote" in out


def test_cli_train_on_npz_with_data_option(capsys, tmp_path):
    g = np.random.default_rng(0)
    x = (g.random((200, 8, 8, 1)) * 255).astype(np.uint8)
    y = np.repeat(np.arange(4), 50)
    x[np.arange(200), y, y, 0] = 255  # a learnable mark per class
    np.savez(tmp_path / "d.npz", x=x, y=y)
    code, _out, err = run(capsys, "train", "--arch", "smallcnn", "--dataset", "npz",
                          "--data-dir", str(tmp_path / "d.npz"), "--data-option", "layout=nhwc", "--epochs", "1",
                          "--out", str(tmp_path / "m"), "--no-progress")
    assert code == 0, err
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["input_shape"] == [1, 8, 8] and meta["extra"]["recipe"]["data_options"] == {"layout": "nhwc"}
    code, _, err = run(capsys, "train", "--arch", "smallcnn", "--dataset", "npz", "--data-dir", str(tmp_path / "d.npz"),
                       "--data-option", "colour=1")
    assert code == 2 and "takes no option 'colour'" in one_error_line(err)
    code, _, err = run(capsys, "train", "--arch", "smallcnn", "--dataset", "npz", "--data-dir", str(tmp_path / "d.npz"),
                       "--data-option", "layout")
    assert code == 2 and one_error_line(err) == "error: --data-option expects KEY=VALUE, got 'layout'"
