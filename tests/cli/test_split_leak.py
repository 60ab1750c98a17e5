"""One resolver for the test split (issue 14 / issue 15 item 5): a model trained with split seed 3 is never
attacked, certified or evaluated on images of its own training split, whichever command runs.

Every command resolves its splits through ``cli.options.resolve_splits``, which reads the split seed the
checkpoint records. A spy on ``make_splits`` captures the test split each command would use (and stops it
there, before any work); the test then checks that no such image is in the owner's training split of seed 3.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import bbdefense.data as data_mod
from bbdefense.cli import main
from bbdefense.errors import BBDefenseError
from checkpoint_helpers import save_untrained_smallcnn

SEED = 3


class _Stop(BBDefenseError):
    """Raised by the spy: the command has resolved its splits; nothing more is needed."""


@pytest.fixture(scope="module")
def ck3(tmp_path_factory) -> Path:
    """A (cheap, untrained) SmallCNN checkpoint whose metadata says: trained on owner_train of split seed 3."""
    return save_untrained_smallcnn(tmp_path_factory.mktemp("ck3") / "ck",
                                   train={"split": "owner_train", "split_seed": SEED})


def _keys(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


@pytest.fixture(scope="module")
def owner3() -> set[bytes]:
    return _keys(data_mod.make_splits(data_mod.load_dataset("mnist5k"), seed=SEED).owner_train.x)


COMMANDS = {
    "attack": ["attack", "--model", "CK", "--attack", "square", "-n", "2", "--max-queries", "10"],
    "certify": ["certify", "--model", "CK", "-n", "2", "--n", "10"],
    "evaluate": ["evaluate", "--model", "CK", "-d", "rnd:nu=0.1"],
    "defend-rnd": ["defend", "rnd", "--model", "CK"],
    "zo-ae-ds": ["defend", "zo-ae-ds", "--model", "CK", "--variant", "rs"],
    "irs": ["defend", "irs", "--surrogate", "CK", "--model", "CK"],
    "distill": ["distill", "--model", "CK"],
    "ducd": ["defend", "ducd", "--model", "CK"],
    "privacy": ["privacy", "--model", "CK"],
    "steal": ["steal", "--model", "CK"],
}
MODULE_ONLY = {"evaluate", "defend-rnd", "privacy"}  # the other kinds are refused (tests/cli/test_model_kinds.py)
KINDS = ("checkpoint", "onnx", "torchscript", "url", "factory")


def _spy(monkeypatch) -> list[tuple[int, data_mod.Splits]]:
    seen: list[tuple[int, data_mod.Splits]] = []
    real = data_mod.make_splits

    def spy(ds, *, seed=0, sizes=None):
        splits = real(ds, seed=seed, sizes=sizes)
        seen.append((seed, splits))
        raise _Stop(f"splits resolved with seed {seed}")

    monkeypatch.setattr(data_mod, "make_splits", spy)
    return seen


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_command_evaluates_a_model_on_its_training_split(name: str, ck3: Path, owner3: set[bytes], tmp_path: Path,
                                                            monkeypatch, capsys) -> None:
    seen = _spy(monkeypatch)
    monkeypatch.chdir(tmp_path)
    args = [str(ck3) if a == "CK" else a for a in COMMANDS[name]]
    out_flag = ["--out", str(tmp_path / "out")]
    code = main([*args, *out_flag])
    err = capsys.readouterr().err
    assert code == 2 and f"splits resolved with seed {SEED}" in err, (code, err)
    assert [s for s, _ in seen] == [SEED]
    test = seen[0][1].test
    assert not (_keys(test.x) & owner3), "a 'test' image is one the model was trained on"


@pytest.mark.parametrize(("name", "kind"), [(n, k) for n in sorted(COMMANDS) for k in KINDS
                                            if k != "checkpoint" and not (n in MODULE_ONLY and k in ("onnx", "url"))])
def test_every_model_kind_is_evaluated_off_its_training_split(name: str, kind: str, model_kinds: dict[str, str],
                                                              owner3: set[bytes], tmp_path: Path, monkeypatch,
                                                              capsys) -> None:
    """The same with every other kind of the same model: a factory declares its split seed (3), the kinds that
    record none (ONNX, TorchScript, URL) take ``--split-seed 3``; the split each command resolves is seed 3's."""
    seen = _spy(monkeypatch)
    monkeypatch.chdir(tmp_path)
    spec = model_kinds[kind]
    args = [spec if a == "CK" else a for a in COMMANDS[name]]
    if name == "irs":  # the surrogate needs a module; the protected black box is the kind under test
        args = ["defend", "irs", "--surrogate", model_kinds["checkpoint"], "--model", spec]
    extra = [] if kind == "factory" else ["--split-seed", str(SEED), "--dataset", "mnist5k"]
    if name == "privacy" and kind == "torchscript":  # records no architecture to retrain
        extra += ["--arch", "smallcnn"]
    code = main([*args, *extra, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and f"splits resolved with seed {SEED}" in err, (code, err)
    assert [s for s, _ in seen] == [SEED]
    assert not (_keys(seen[0][1].test.x) & owner3), "a 'test' image is one the model was trained on"


def test_contradicting_split_seed_is_refused_in_one_line(ck3: Path, tmp_path: Path, capsys) -> None:
    code = main(["certify", "--model", str(ck3), "--split-seed", "0", "-n", "2", "--n", "10",
                 "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "trained with split seed 3" in err[0]
    assert not (tmp_path / "c").exists()


def test_a_model_trained_on_the_test_split_is_not_evaluated_there(ck3: Path, tmp_path: Path, capsys) -> None:
    meta = json.loads(ck3.with_suffix(".json").read_text())
    meta["train"]["split"] = "test"
    bad = tmp_path / "bad"
    bad.with_suffix(".safetensors").write_bytes(ck3.with_suffix(".safetensors").read_bytes())
    bad.with_suffix(".json").write_text(json.dumps(meta))
    code = main(["certify", "--model", str(bad), "-n", "2", "--n", "10", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and "trained on the test split" in err


def test_certify_rows_are_of_the_checkpoints_test_split(ck3: Path, owner3: set[bytes], tmp_path: Path) -> None:
    """End to end: the certified images are the first test images of split seed 3, recorded as such."""
    out = tmp_path / "cert"
    assert main(["certify", "--model", str(ck3), "-n", "3", "--n0", "10", "--n", "20", "--norm", "l2",
                 "--out", str(out), "--no-progress"]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["split_seed"] == SEED
    rows = [json.loads(line) for line in (out / "rows" / "certify.jsonl").read_text().splitlines()]
    test = data_mod.make_splits(data_mod.load_dataset("mnist5k"), seed=SEED).test
    idx = [int(r["idx"]) for r in rows]
    assert idx == [0, 1, 2]
    assert not (_keys(test.x[idx]) & owner3)


def test_config_runner_refuses_a_split_seed_the_checkpoint_was_not_trained_with(ck3: Path, tmp_path: Path,
                                                                                 capsys) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"target: {{checkpoint: {ck3}}}\ndata: {{n: 2, split_seed: 0}}\n")
    code = main(["check-config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and "split seed 3" in err and "data.split_seed: 3" in err
    cfg.write_text(f"target: {{checkpoint: {ck3}}}\ndata: {{n: 2, split_seed: {SEED}}}\n")
    assert main(["check-config", str(cfg)]) == 0
