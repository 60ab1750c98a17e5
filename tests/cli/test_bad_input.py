"""The bad-input harness (issue 14, items 4-5): every bad option, config value or file is refused before any
work or any file is written, with exit code 2, exactly one line on stderr, no traceback, and no run directory.

Most cases run in-process through :func:`bbdefense.cli.main`; one runs the real entry point in a subprocess.
The checkpoint is an untrained SmallCNN (saved, not trained: the file stays fast).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bbdefense.cli import main
from checkpoint_helpers import save_untrained_smallcnn


@pytest.fixture(scope="module")
def ck(tmp_path_factory) -> Path:
    """An untrained SmallCNN checkpoint for MNIST-5k images, plus broken variants next to it."""
    d = tmp_path_factory.mktemp("ck")
    save_untrained_smallcnn(d / "ck")
    good = json.loads((d / "ck.json").read_text())
    variants = {"shape": {"input_shape": [3, 32, 32]}, "classes": {"num_classes": 7}}
    for name, change in variants.items():
        (d / f"{name}.safetensors").write_bytes((d / "ck.safetensors").read_bytes())
        (d / f"{name}.json").write_text(json.dumps({**good, **change}))
    (d / "trunc.safetensors").write_bytes((d / "ck.safetensors").read_bytes()[:200])  # truncated weights
    (d / "trunc.json").write_text(json.dumps(good))
    (d / "garbage.safetensors").write_bytes(b"\x00" * 64)  # corrupted weights
    (d / "garbage.json").write_text(json.dumps(good))
    (d / "notjson.safetensors").write_bytes((d / "ck.safetensors").read_bytes())
    (d / "notjson.json").write_text("{not json")
    np.save(d / "x.npy", np.full((2, 1, 28, 28), 0.5, np.float32))
    np.save(d / "empty.npy", np.zeros((0, 1, 28, 28), np.float32))
    np.save(d / "nan.npy", np.full((2, 1, 28, 28), np.nan, np.float32))
    np.save(d / "inf.npy", np.full((2, 1, 28, 28), np.inf, np.float32))
    np.save(d / "big.npy", np.full((2, 1, 28, 28), 3.0, np.float32))
    np.save(d / "wrongshape.npy", np.zeros((2, 3, 32, 32), np.float32))
    (d / "text.npy").write_text("not an array")
    (d / "ck.onnx").write_bytes(b"not onnx")  # exists: the config schema refuses attacks on an ONNX target
    (d / "keys.json").write_text(json.dumps({"keys": [{"name": "a", "key": "k1", "budget": 5},
                                                      {"name": "a", "key": "k2", "budget": 7}]}))
    return d / "ck"


CONFIGS = {
    "ok": "target: {checkpoint: CK}\ndata: {n: 5}",
    "dataset": "target: {checkpoint: CK}\ndata: {dataset: nosuch}",
    "missing_ck": "target: {checkpoint: /nonexistent/ck}",
    "eps_neg": "target: {checkpoint: CK}"
               "\nattacks: [{name: square, budget: 10, params: {norm: linf, eps: -0.3}}]",
    "eps_big": "target: {checkpoint: CK}"
               "\nattacks: [{name: square, budget: 10, params: {norm: linf, eps: 2}}]",
    "norm": "target: {checkpoint: CK}\nattacks: [{name: square, budget: 10, params: {norm: l7, eps: 0.1}}]",
    "nu": "target: {checkpoint: CK}\ndefenses: [{name: rnd, params: {nu: -1}}]",
    "n_members": "target: {checkpoint: CK}\nprivacy: {n_members: -3}",
    "seed": "seed: -1\ntarget: {checkpoint: CK}",
    "name": "name: ../../etc/x\ntarget: {checkpoint: CK}",
    "gen_gaussian": "target: {checkpoint: CK}\ncertify: [{noise: gen_gaussian, sigma: 0.25}]",
    "big_n": "target: {checkpoint: CK}\ndata: {n: 100000}",
    "unknown_key": "target: {checkpoint: CK}\nbogus: 1",
    "bad_yaml": "target: {checkpoint: CK\n",
    "unknown_attack": "target: {checkpoint: CK}\nattacks: [{name: nosuch}]",
    "onnx_attacks": "target: {checkpoint: CK.onnx}\nattacks: [{name: square}]",
}


def write_config(tmp: Path, ck: Path, name: str) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(CONFIGS[name].replace("CK", str(ck)))
    return p


def refused(capsys, args: list[str]) -> str:
    """Run the CLI; assert exit 2, exactly one stderr line, no traceback; return the line."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def cwd(tmp_path, monkeypatch) -> Path:
    """Run in an empty folder: a default run directory would appear as ./runs."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_nothing_written(cwd: Path) -> None:
    assert not (cwd / "runs").exists(), sorted(p.name for p in (cwd / "runs").rglob("*"))
    assert not (cwd / "out").exists()


# (id, argv with CK = the checkpoint's stem and D = its folder, expected fragment of the one line)
CLI_CASES = [
    # the cases
    ("attack-seed", ["attack", "--model", "CK", "--seed", "-1"], "'--seed': must be an integer >= 0"),
    ("certify-seed", ["certify", "--model", "CK", "--seed", "-1"], "'--seed': must be an integer >= 0"),
    ("certify-alpha0", ["certify", "--model", "CK", "--alpha", "0"], "'--alpha': must be in (0, 1), got 0.0"),
    ("attack-norm-l7", ["attack", "--model", "CK", "--norm", "l7", "-n", "2"],
     "norm must be one of linf, l2, got 'l7'"),
    ("serve-port", ["serve", "--model", "CK", "--port", "70000"],
     "'--port': must be an integer >= 1 and <= 65535"),
    ("serve-budget", ["serve", "--model", "CK", "--budget", "-1"],
     "'--budget': must be an integer >= 0, got -1"),
    ("serve-db-folder", ["serve", "--model", "CK", "--db", "D", "--port", "1"],
     "is a folder; give a file path"),
    ("serve-db-not-sqlite", ["serve", "--model", "CK", "--db", "D/ck.json", "--port", "1"],
     "is not a SQLite state file"),
    ("serve-db-under-file", ["serve", "--model", "CK", "--db", "D/ck.json/state.sqlite3", "--port", "1"],
     "is a file, not a folder"),
    ("serve-keys-dup", ["serve", "--model", "CK", "--keys", "D/keys.json"], "key name 'a' appears 2 times"),
    ("evaluate-budgets", ["evaluate", "--model", "CK", "--budgets", "abc"],
     "--budgets must be comma-separated"),
    ("evaluate-attacks", ["evaluate", "--model", "CK", "--attacks", "bogus"], "unknown attack 'bogus'"),
    ("evaluate-eps", ["evaluate", "--model", "CK", "--eps", "2"], "--eps 2 is outside (0, 1] for linf"),
    ("evaluate-defense-value", ["evaluate", "--model", "CK", "-d", "rnd:nu=-1"], "nu must be >= 0, got -1"),
    ("predict-shape-json", ["predict", "--model", "D/shape", "--input", "D/x.npy"],
     "metadata says input_shape [3, 32, 32], which the weights do not take"),
    ("attack-shape-json", ["attack", "--model", "D/shape"], "which the weights do not take"),
    ("predict-classes-json", ["predict", "--model", "D/classes", "--input", "D/x.npy"],
     "metadata says 7 classes, the weights answer with 10 outputs"),
    ("train-out-under-file",
     ["train", "--arch", "smallcnn", "--dataset", "mnist5k", "--out", "D/ck.json/model"],
     "is a file, not a folder"),
    ("predict-empty", ["predict", "--model", "CK", "--input", "D/empty.npy"], "expected a non-empty batch"),
    ("attack-eot0", ["attack", "--model", "CK", "--eot", "0"], "'--eot': must be an integer >= 1, got 0"),
    ("attack-eps-linf", ["attack", "--model", "CK", "--eps", "2"], "--eps 2 is outside (0, 1] for linf"),
    ("attack-eps-l2", ["attack", "--model", "CK", "--norm", "l2", "--eps", "29"],
     "--eps 29 is outside (0, 28] for l2"),
    ("attack-n-too-many", ["attack", "--model", "CK", "-n", "100000"],
     "-n 100000 asks for more than the 1000 test images of mnist5k; give -n 1000 or fewer"),
    ("certify-n-too-many", ["certify", "--model", "CK", "-n", "100000"], "give -n 1000 or fewer"),
    ("certify-gen-gaussian", ["certify", "--model", "CK", "--noise", "gen_gaussian"],
     "--noise gen_gaussian needs its shape: give --beta"),
    # representative cases that already failed cleanly: wrong files, corrupt checkpoints, NaN/inf, ranges,
    # unknown names
    ("predict-missing-input", ["predict", "--model", "CK", "--input", "D/nope.npy"], "input file not found"),
    ("predict-text-input", ["predict", "--model", "CK", "--input", "D/text.npy"], "cannot read images"),
    ("predict-missing-model", ["predict", "--model", "D/nope", "--input", "D/x.npy"], "not found"),
    ("predict-truncated-ck", ["predict", "--model", "D/trunc", "--input", "D/x.npy"],
     "do not match the hash"),
    ("predict-corrupt-ck", ["predict", "--model", "D/garbage", "--input", "D/x.npy"],
     "do not match the hash"),
    ("predict-ck-not-json", ["predict", "--model", "D/notjson", "--input", "D/x.npy"], "is not valid JSON"),
    ("predict-nan", ["predict", "--model", "CK", "--input", "D/nan.npy"], "images contain NaN"),
    ("predict-inf", ["predict", "--model", "CK", "--input", "D/inf.npy"], "inf"),
    ("predict-range", ["predict", "--model", "CK", "--input", "D/big.npy"], "[0, 1]"),
    ("predict-wrong-shape", ["predict", "--model", "CK", "--input", "D/wrongshape.npy"], "shape"),
    ("predict-output", ["predict", "--model", "CK", "--input", "D/x.npy", "--output", "bogus"], "bogus"),
    ("predict-backend", ["predict", "--model", "CK", "--input", "D/x.npy", "--backend", "bogus"], "bogus"),
    ("attack-unknown", ["attack", "--model", "CK", "--attack", "nosuch"], "unknown attack 'nosuch'"),
    ("attack-eps-text", ["attack", "--model", "CK", "--eps", "abc"], "--eps must be a number"),
    ("attack-criterion", ["attack", "--model", "CK", "--criterion", "bogus"], "criterion must be one of"),
    ("attack-param", ["attack", "--model", "CK", "--param", "p_init=7"], "p_init"),
    ("attack-budget0", ["attack", "--model", "CK", "--budget", "0"], "'--budget': must be an integer >= 1"),
    ("attack-max-queries0", ["attack", "--model", "CK", "--max-queries", "0"],
     "'--max-queries': must be an integer >= 1"),
    ("certify-noise", ["certify", "--model", "CK", "--noise", "nosuch"], "unknown noise 'nosuch'"),
    ("certify-sigma-nan", ["certify", "--model", "CK", "--sigma", "nan"],
     "'--sigma': must be a finite number > 0"),
    ("certify-norm", ["certify", "--model", "CK", "--norm", "l9"], "l9"),
    ("train-arch", ["train", "--arch", "nosuch", "--dataset", "mnist5k"], "unknown architecture 'nosuch'"),
    ("train-dataset", ["train", "--arch", "smallcnn", "--dataset", "nosuch"], "unknown dataset 'nosuch'"),
    ("train-lr", ["train", "--arch", "smallcnn", "--dataset", "mnist5k", "--lr", "-1"],
     "'--lr': must be a finite"),
    ("defend-nu", ["defend", "rnd", "--model", "CK", "--nu", "-1"], "'--nu': must be a finite number >= 0"),
    ("defend-layer", ["defend", "rfd", "--model", "CK", "--layers", "nosuch"], "unknown layer 'nosuch'"),
    ("serve-keys-missing", ["serve", "--model", "CK", "--keys", "D/nokeys.json"], "keys file not found"),
    ("report-missing", ["report", "D/norun"], "no record.json"),
    ("no-such-command", ["nosuchcommand"], "No such command 'nosuchcommand'"),
]


@pytest.mark.parametrize(("args", "expect"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_cli_input_is_refused_before_any_work(capsys, cwd, ck, args, expect):
    d = str(ck.parent)
    argv = [d if a == "D" else a.replace("D/", d + "/", 1) if a.startswith("D/") else a.replace("CK", str(ck))
            for a in args]
    line = refused(capsys, argv)
    assert line.startswith("error: ")
    assert expect in line, line
    assert_nothing_written(cwd)


def test_train_into_a_bad_folder_fails_before_training(capsys, cwd, ck):
    t0 = time.perf_counter()
    refused(capsys, ["train", "--arch", "smallcnn", "--dataset", "mnist5k", "--epochs", "50",
                     "--out", ck.with_suffix(".json") / "model"])
    assert time.perf_counter() - t0 < 20  # 50 epochs would take minutes


def test_serve_on_a_busy_port(capsys, cwd, ck):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        line = refused(capsys, ["serve", "--model", ck, "--port", str(port),
                                "--db", cwd / "out" / "state.sqlite3"])
    assert f"cannot serve on 127.0.0.1:{port}" in line
    assert_nothing_written(cwd)


CONFIG_CASES = [
    ("dataset", "data.dataset: unknown dataset 'nosuch'"),
    ("missing_ck", "checkpoint not found: /nonexistent/ck.safetensors"),
    ("eps_neg", "eps must be a finite number > 0, got -0.3"),
    ("eps_big", "eps 2 is outside (0, 1] for linf"),
    ("norm", "norm must be one of linf, l2, got 'l7'"),
    ("nu", "nu must be >= 0, got -1"),
    ("n_members", "n_members must be >= 4, got -3"),
    ("seed", "seed: Input should be greater than or equal to 0, got -1"),
    ("name", "name must be a plain folder name"),
    ("gen_gaussian", "noise 'gen_gaussian' needs its shape in noise_params.beta"),
    ("big_n", "n 100000 asks for more than the 1000 test images"),
    ("unknown_key", "bogus: unknown key"),
    ("bad_yaml", "not valid YAML"),
    ("unknown_attack", "unknown attack 'nosuch'"),
    ("onnx_attacks", "need the target as a torch checkpoint"),
]


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize(("name", "expect"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_is_refused_by_check_config_and_run(capsys, cwd, ck, command, name, expect):
    line = refused(capsys, [command, write_config(cwd, ck, name)])
    assert expect in line, line
    assert_nothing_written(cwd)


def test_non_utf8_config(capsys, cwd):
    p = cwd / "latin1.yaml"
    p.write_bytes(b"name: caf\xe9\ntarget: {arch: smallcnn}\n")
    for command in ("check-config", "run"):
        assert "not UTF-8 text (byte 0xe9" in refused(capsys, [command, p])
    assert_nothing_written(cwd)


def test_a_refused_command_does_not_block_the_corrected_one(capsys, cwd, ck):
    """The rejected options are refused before record.json exists, so the default run dir stays usable."""
    refused(capsys, ["certify", "--model", ck, "--alpha", "0", "-n", "1", "--n0", "5", "--n", "10"])
    refused(capsys, ["attack", "--model", ck, "--norm", "l7", "-n", "1", "--max-queries", "5"])
    assert_nothing_written(cwd)
    assert main(["certify", "--model", str(ck), "-n", "1", "--n0", "5", "--n", "10", "--no-progress"]) == 0
    assert main(["attack", "--model", str(ck), "-n", "1", "--max-queries", "5", "--no-progress"]) == 0
    assert (cwd / "runs" / "certify" / "record.json").is_file()
    assert (cwd / "runs" / "attack-square-linf" / "record.json").is_file()


def test_check_config_accepts_a_good_config(capsys, cwd, ck):
    assert main(["check-config", str(write_config(cwd, ck, "ok"))]) == 0
    assert "valid" in capsys.readouterr().out
    assert_nothing_written(cwd)


# ------------------------------------------------------------------ the error handler itself
def test_a_bug_prints_one_line_and_logs_its_traceback(capsys, cwd, ck, monkeypatch):
    from bbdefense.cli import cmd_core

    def broken(path):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(cmd_core, "load_images", broken)
    monkeypatch.setenv("BBDEFENSE_LOG_DIR", str(cwd / "logs"))
    code = main(["predict", "--model", str(ck), "--input", str(ck.parent / "x.npy")])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert "internal error" in lines[0] and "ZeroDivisionError: boom" in lines[0]
    log = Path(lines[0].rsplit("traceback written to ", 1)[1])
    assert log.parent == cwd / "logs" and "Traceback" in log.read_text() and "boom" in log.read_text()


def test_ctrl_c_says_how_to_resume(capsys, cwd, ck, monkeypatch):
    from bbdefense.cli import cmd_core

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd_core, "load_images", interrupted)
    code = main(["predict", "--model", str(ck), "--input", str(ck.parent / "x.npy")])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 130 and len(lines) == 1 and "rerun the same command to resume" in lines[0]


def test_the_entry_point_in_a_subprocess(tmp_path, ck):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "bbdefense", "attack", "--model", str(ck), "--seed", "-1"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "--seed" in lines[0], r.stderr
    assert not (tmp_path / "runs").exists()
