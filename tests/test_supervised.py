"""`rl supervised`: data, augmentation, penalties, schedules, the run folder, transfer, and slow accuracy runs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import invoke, ok, only_run, scalars
from safetensors.torch import load_file

from agents import checkpoint
from agents.config import EncoderConfig
from agents.encoders import encoder_from_config
from agents.supervised import SupervisedConfig, load_data, lr_factor, make_optimizer, random_shift, weight_penalty

torch.set_num_threads(1)
QUIET = ["--set", "progress=false", "--set", "torch_threads=1"]


def supervised(tmp_path, model: str, data: str, *settings: str):
    args = ["supervised", model, "--data", data, "--device", "cpu", "--set", f"runs_dir={tmp_path / 'runs'}", *QUIET]
    for s in settings:
        args += ["--set", s]
    return invoke(args)


def test_data_splits_are_stratified_fixed_and_shaped():
    digits = load_data(SupervisedConfig())
    assert digits.obs_shape == (1, 8, 8) and digits.n_classes == 10 and digits.grid
    assert len(digits.train.y) + len(digits.val.y) + len(digits.test.y) == 1797
    assert len(digits.test.y) == math.ceil(0.2 * 1797) and 0 <= digits.train.x.min() and digits.train.x.max() <= 1
    assert torch.bincount(digits.test.y).min() >= 34  # stratified: every class ~36 times out of 360
    rows = load_data(SupervisedConfig(data="digit_rows"))
    assert rows.obs_shape == (8, 8) and torch.equal(rows.test.x, digits.test.x[:, 0])  # the same images, as sequences
    parity = load_data(SupervisedConfig(data="parity", sequence_length=5, num_samples=200))
    assert parity.obs_shape == (5, 1) and torch.equal(parity.train.y, parity.train.x.sum(dim=(1, 2)).long() % 2)
    assert torch.equal(
        load_data(SupervisedConfig(data="parity", sequence_length=5, num_samples=200)).test.x, parity.test.x
    )


def test_random_shift_translates_with_zero_fill():
    x = torch.zeros(50, 1, 5, 5)
    x[:, 0, 2, 2] = 1.0  # one lit pixel in the centre
    shifted = random_shift(x, 1, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape and torch.equal(shifted.sum(dim=(1, 2, 3)), torch.ones(50))
    where = shifted[:, 0].flatten(1).argmax(1)
    rows, cols = where // 5, where % 5
    assert rows.min() == 1 and rows.max() == 3 and cols.min() == 1 and cols.max() == 3  # moved by at most one pixel
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 4  # and in several directions
    corner = torch.zeros(1, 5, 5)
    corner[0, 0, 0] = 1.0
    outs = {random_shift(corner, 1, torch.Generator().manual_seed(s)).sum().item() for s in range(20)}
    assert outs == {0.0, 1.0}  # pushed off the edge it is gone, not wrapped around


def test_weight_penalty_and_schedules_by_hand():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0]]))
        model.bias.fill_(5.0)
    assert weight_penalty(model, 0.1, 0.0).item() == pytest.approx(0.3)  # biases are not penalised
    assert weight_penalty(model, 0.0, 0.5).item() == pytest.approx(2.5)
    assert lr_factor("cosine", 0, 10, 3, 0.1) == 1.0 and lr_factor("cosine", 5, 10, 3, 0.1) == pytest.approx(0.5)
    assert lr_factor("step", 7, 10, 3, 0.1) == pytest.approx(0.01) and lr_factor(
        "linear", 4, 10, 3, 0.1
    ) == pytest.approx(0.6)
    assert lr_factor("constant", 9, 10, 3, 0.1) == 1.0


@pytest.mark.parametrize(
    "name,cls",
    [
        ("sgd", torch.optim.SGD),
        ("adagrad", torch.optim.Adagrad),
        ("rmsprop", torch.optim.RMSprop),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
    ],
)
def test_optimizers(name, cls):
    opt = make_optimizer(
        torch.nn.Linear(2, 2).parameters(), SupervisedConfig(optimizer=name, nesterov=True, weight_decay=0.01)
    )
    assert type(opt) is cls and opt.param_groups[0]["weight_decay"] == 0.01
    if name == "sgd":
        assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9


def test_run_folder_and_the_encoder_loads_back(tmp_path):
    out = ok(
        supervised(
            tmp_path,
            "mlp",
            "digits",
            "epochs=2",
            "encoder.hidden_sizes=32",
            "encoder.norm=layer",
            "encoder.dropout=0.1",
            "optimizer=sgd",
            "learning_rate=0.1",
            "nesterov=true",
            "l1=1e-5",
            "l2=1e-4",
            "schedule=step",
        )
    )
    run_dir = only_run(tmp_path / "runs")
    assert run_dir.name.startswith("digits-mlp__supervised__1__") and "test accuracy" in out
    for name in ("config.yaml", "confusion_matrix.png", "encoder.safetensors", "metrics.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    tags = scalars(run_dir)
    assert (
        tags["test/accuracy"] == [(2, pytest.approx(metrics["test_accuracy"]))]
        and len(tags["supervised/val_loss"]) == 2
    )
    assert metrics["test_accuracy"] > 0.5  # two epochs of a small MLP: well above chance (0.1)

    ckpt = checkpoint.load(checkpoint.latest(run_dir / "checkpoints"))
    enc_config = EncoderConfig(name="mlp", hidden_sizes=(32,), norm="layer", init=str(run_dir))
    encoder = encoder_from_config(enc_config, (1, 8, 8)).eval()
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, ckpt.tensors[f"model.encoder.{key}"])
    assert load_file(str(run_dir / "encoder.safetensors")).keys() == encoder.state_dict().keys()


def test_early_stopping_stops_when_the_validation_loss_stalls(tmp_path):
    # a learning rate of 1e-30 leaves float32 weights unchanged: the validation loss never improves after epoch 1
    ok(
        supervised(
            tmp_path, "mlp", "digits", "epochs=10", "learning_rate=1e-30", "patience=2", "encoder.hidden_sizes=16"
        )
    )
    assert json.loads((only_run(tmp_path / "runs") / "metrics.json").read_text())["epochs"] == 3


@pytest.mark.parametrize(
    "args,needles",
    [
        (["supervised", "lstn"], ["'encoder.name'", "'lstm'"]),
        (["supervised", "mlp", "--data", "digitz"], ["'data'", "'digits'"]),
        (["supervised", "mlp", "--data", "parity", "--set", "shift=1"], ["shift=0"]),
        (["supervised", "lstm", "--data", "digits"], ["lstm", "(1, 8, 8)"]),
        (["supervised", "mlp", "--set", "optimizer=adamx"], ["'adam'"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needles):
    result = invoke([*args, "--set", f"runs_dir={tmp_path}"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr
    assert not any(tmp_path.iterdir())  # no run folder for a refused command


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,data,target",
    [("resnet_tower", "digits", 0.98), ("lstm", "digit_rows", 0.95), ("transformer", "digit_rows", 0.95)],
)
def test_accuracy_on_digits(tmp_path, model, data, target):
    """The configs/supervised defaults: ~10 s (tower, 20 epochs), ~10 s (lstm, 50), ~20 s (transformer, 50)."""
    ok(supervised(tmp_path, model, data))
    accuracy = json.loads((only_run(tmp_path / "runs") / "metrics.json").read_text())["test_accuracy"]
    assert accuracy >= target, f"{model} on {data}: test accuracy {accuracy:.3f} < {target}"
