"""`fastseg train --log tensorboard|mlflow|wandb`, all offline: each tracker's files read back with
its own reader (TensorBoard's EventAccumulator, MLflow's client on a local sqlite store, the
records of W&B's offline run file)."""

import json
import os
import struct
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main

FIGURES = ("train_ds_sample", "val_ds_sample", "training_curve")


def offline(home: Path) -> dict[str, str]:
    """Environment variables that keep MLflow and W&B on the disk under `home`."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(home),
        "WANDB_CACHE_DIR": str(home),
        "WANDB_DATA_DIR": str(home),
        "WANDB_CONFIG_DIR": str(home),
        "WANDB_PROJECT": "tests",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "MLFLOW_EXPERIMENT_NAME": "tests",
    }


@pytest.fixture(scope="module")
def tracked_run(voc_root, tmp_path_factory):
    """One 2-epoch run logged to all three trackers, nothing leaving the machine."""
    home = tmp_path_factory.mktemp("trackers")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in offline(home).items():
            patch.setenv(name, value)
        patch.chdir(home)  # MLflow's artefacts go to ./mlruns
        run_dir = home / "run"
        arguments = [
            "train",
            "--data",
            str(voc_root),
            "--out",
            str(run_dir),
            "--recipe",
            "seed",
            "--size",
            "48",
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--no-pretrained",
            "--num-workers",
            "0",
            "--lr",
            "3e-3",
            "--log",
            "tensorboard",
            "--log",
            "mlflow",
            "--log",
            "wandb",
        ]
        result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    # a failing tracker is fenced (the run goes on, exit 0): a bug in fastseg's own tracker code
    # would pass unseen but for its line in train.log
    log = (run_dir / "train.log").read_text()
    assert "training goes on without it" not in log and "could not start logging" not in log, log
    return run_dir, home, pd.read_csv(run_dir / "history.csv")


@pytest.mark.slow
def test_tensorboard_gets_epochs_hyperparameters_and_figures(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir, _, history = tracked_run
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert [event.value for event in events.Scalars("valid_miou")] == pytest.approx(
        list(history["valid_miou"])
    )
    assert [event.value for event in events.Scalars("valid_loss")] == pytest.approx(
        list(history["valid_loss"])
    )
    assert events.Scalars("lr_0") and events.Scalars("train_loss")
    assert events.Scalars("best/valid_miou")[0].value == pytest.approx(history["valid_miou"].max())
    for name in FIGURES:
        image = events.Images(name)[0]
        assert (image.width, image.height) == Image.open(run_dir / f"{name}.png").size
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["lr"].number_value == pytest.approx(3e-3) and hparams["recipe"].string_value == "seed"
    assert hparams["augment.flip_p"].number_value == 0.5


@pytest.mark.slow
def test_mlflow_gets_epochs_params_figures_and_the_model(tracked_run):
    import mlflow

    run_dir, home, history = tracked_run
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.003" and run.data.params["augment.rotate_degrees"] == "45.0"
    miou = client.get_metric_history(run.info.run_id, "valid_miou")
    assert [m.step for m in miou] == [0, 1]
    assert [m.value for m in miou] == pytest.approx(list(history["valid_miou"]))
    assert len(client.get_metric_history(run.info.run_id, "lr")) == 2
    assert run.data.metrics["best_valid_miou"] == pytest.approx(history["valid_miou"].max())
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert artifacts == {f"figures/{name}.png" for name in FIGURES}
    model = Path(client.download_artifacts(run.info.run_id, "model/model.pth", str(home / "download")))
    assert model.read_bytes() == (run_dir / "model.pth").read_bytes()


def wandb_records(path: Path) -> list:
    """The records of a W&B run file: a 7-byte header (":W&B", magic, version), then LevelDB-style
    32 KiB blocks of chunks (crc32, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    position, pending, records = 7, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length, kind = struct.unpack("<HB", data[position + 4 : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def values(items) -> dict:
    """A record's items (`key`, or `nested_key` parts, and a JSON value) as a dict."""
    return {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in items}


@pytest.mark.slow
def test_wandb_offline_run_holds_epochs_config_figures_and_the_model(tracked_run):
    run_dir, _, history = tracked_run
    (run_folder,) = (run_dir / "wandb").glob("offline-run-*")
    records = wandb_records(next(run_folder.glob("run-*.wandb")))
    (config,) = [values(r.run.config.update) for r in records if r.HasField("run")]
    assert config["lr"] == 3e-3 and config["augment"]["flip_p"] == 0.5
    assert config["trackers"] == ["tensorboard", "mlflow", "wandb"]
    rows = [values(r.history.item) for r in records if r.HasField("history")]
    epochs = [row for row in rows if "valid_miou" in row]
    assert [row["valid_miou"] for row in epochs] == pytest.approx(list(history["valid_miou"]))
    assert [row["epoch"] for row in epochs] == [0, 1] and all(row["lr"] > 0 for row in epochs)
    assert {name.split(".")[0] for row in rows for name in row} >= set(FIGURES)
    summary = {
        key: value
        for r in records
        if r.HasField("summary")
        for key, value in values(r.summary.update).items()
    }
    assert summary["best_valid_miou"] == pytest.approx(history["valid_miou"].max())
    artifacts = [r.artifact for r in records if r.HasField("artifact")]
    assert [(a.type, [entry.path for entry in a.manifest.contents]) for a in artifacts] == [
        ("model", ["model.pth"])
    ]
    assert len(list((run_folder / "files" / "media" / "images").glob("*.png"))) == 3


@pytest.mark.parametrize("tracker", ["tensorboard", "mlflow", "wandb"])
def test_a_tracker_that_is_not_installed_is_one_line_before_any_work(
    tracker, voc_root, tmp_path, monkeypatch
):
    import fastseg.training.config

    monkeypatch.setattr(fastseg.training.config, "find_spec", lambda module: None)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["train", "--data", str(voc_root), "--out", str(run_dir), "--log", tracker]
    )
    module = {"tensorboard": "tensorboard", "mlflow": "mlflow, sqlalchemy", "wandb": "wandb"}[tracker]
    assert result.exit_code == 1
    checkout = Path(__file__).resolve().parents[1]  # this checkout's pip, never PyPI's unrelated "fastseg"
    assert result.output.splitlines() == [
        f"Error: --log {tracker} needs {module}: {sys.executable} -m pip install -e '{checkout}[{tracker}]'"
    ]
    assert not run_dir.exists()


@pytest.mark.slow
def test_a_resumed_run_continues_its_mlflow_and_wandb_runs(voc_root, tmp_path, monkeypatch):
    """Ctrl-C after epoch 2 of 3, then `--resume`: one MLflow run holding all three epochs, the
    W&B run resumed under its own id, rather than a second run in each tracker, and TensorBoard's
    steps going on from where they stopped instead of starting again at 0."""
    import mlflow

    from fastseg.training.resume import ResumableCheckpoint

    for name, value in offline(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    original = ResumableCheckpoint.after_epoch

    def interrupt_after_second_epoch(self):
        original(self)
        if self.learn.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(ResumableCheckpoint, "after_epoch", interrupt_after_second_epoch)
    arguments = ["train", "--data", str(voc_root), "--out", str(run_dir), "--recipe", "seed", "--size", "48",
                 "--batch-size", "8", "--epochs", "3", "--no-pretrained", "--num-workers", "0",
                 "--log", "mlflow", "--log", "wandb", "--log", "tensorboard", "--quiet"]  # fmt: skip
    interrupted = CliRunner().invoke(main, arguments)
    assert interrupted.exit_code != 0 and "--resume" in interrupted.output
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests").experiment_id
    (killed,) = client.search_runs([experiment])
    assert killed.info.status == "KILLED"

    monkeypatch.setattr(ResumableCheckpoint, "after_epoch", original)
    # --device, a machine's option a resume may change: MLflow refused the run when its params
    # were logged again ("Changing param values is not allowed": device auto -> cpu)
    resumed = CliRunner().invoke(main, ["train", "--resume", str(run_dir), "--device", "cpu", "--quiet"])
    assert resumed.exit_code == 0, resumed.output

    (run,) = client.search_runs([experiment])
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    history = pd.read_csv(run_dir / "history.csv")
    miou = client.get_metric_history(run.info.run_id, "valid_miou")
    assert [m.step for m in miou] == [0, 1, 2]
    assert [m.value for m in miou] == pytest.approx(list(history["valid_miou"]))
    wandb_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2  # W&B keeps one folder per process, both under the run's one id
    assert len({folder.name.rsplit("-", 1)[1] for folder in wandb_runs}) == 1
    saved = json.loads((run_dir / "trackers.json").read_text())
    assert saved == {"mlflow": run.info.run_id, "wandb": wandb_runs[0].name.rsplit("-", 1)[1]}

    # TensorBoard's steps are training iterations: the resumed part continues the count
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    steps = [event.step for event in events.Scalars("valid_miou")]
    assert [event.value for event in events.Scalars("valid_miou")] == pytest.approx(
        list(history["valid_miou"])
    )
    iterations = steps[0]  # per epoch: 16 training images / batch 8
    assert iterations == 2 and steps == [iterations, 2 * iterations, 3 * iterations]
    train_steps = [event.step for event in events.Scalars("train_loss")]
    # fastai logs train_loss after each batch, and again at the epoch's end on the same step
    assert train_steps == sorted(train_steps) and sorted(set(train_steps)) == list(
        range(1, 3 * iterations + 1)
    )


def test_a_tracker_run_missing_from_the_store_is_said_and_a_new_one_started(tmp_path, monkeypatch):
    """A run resumed against another MLflow store: its saved run id is not there. One line in
    train.log says so, a new run takes the logging, and trackers.json keeps the new id."""
    import mlflow

    from fastseg.runs.folder import RunFolder
    from fastseg.training.config import TrainConfig
    from fastseg.training.reporting import RunReporter

    for name, value in offline(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    run = RunFolder(tmp_path / "run")
    run.create()
    run.write_tracker_runs({"mlflow": "0123456789abcdef0123456789abcdef"})
    config = TrainConfig(data="unused", trackers=("mlflow",))
    with RunReporter(run, config, "valid_miou", None, echo=None, capture_prints=False, main=True):
        pass
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (started,) = mlflow.MlflowClient(store).search_runs(
        [mlflow.get_experiment_by_name("tests").experiment_id]
    )
    assert run.read_tracker_runs() == {"mlflow": started.info.run_id}
    assert run.file("train.log").read_text().splitlines() == [
        f"mlflow: run 0123456789abcdef0123456789abcdef is not in {store}; logging to a new run"
    ]


def test_a_tracker_that_cannot_start_closes_the_ones_already_open_as_failed(tmp_path, monkeypatch):
    """`--log mlflow --log wandb` with W&B failing to start: the MLflow run opened before it is
    closed FAILED, not left running (`__exit__` does not run when `__enter__` raises)."""
    from fastseg.errors import FastsegError
    from fastseg.runs.folder import RunFolder
    from fastseg.training import experiment_trackers
    from fastseg.training.config import TrainConfig
    from fastseg.training.reporting import RunReporter

    closed = []

    class Opens(experiment_trackers.Tracker):
        def open(self, run, config, run_id):
            return None

        def close(self, status):
            closed.append(status)

    class CannotStart(experiment_trackers.Tracker):
        def open(self, run, config, run_id):
            raise ConnectionError("api.wandb.ai unreachable")

    monkeypatch.setitem(experiment_trackers.TRACKER_CLASSES, "mlflow", Opens)
    monkeypatch.setitem(experiment_trackers.TRACKER_CLASSES, "wandb", CannotStart)
    run = RunFolder(tmp_path / "run")
    run.create()
    config = TrainConfig(data="unused", trackers=("mlflow", "wandb"))
    reporter = RunReporter(run, config, "valid_miou", None, echo=None, capture_prints=False, main=True)
    with pytest.raises(FastsegError, match=r"^--log wandb: could not start logging \(.*unreachable"):
        reporter.__enter__()
    assert closed == ["FAILED"]


def test_two_trainings_in_one_process_each_log_to_their_own_store(voc_root, tmp_path, monkeypatch):
    """MLflow's set_experiment writes MLFLOW_EXPERIMENT_ID into the process's environment: a
    second `train` in the same process, against another tracking store, took the first one's id
    for the user's own choice ("No Experiment with id=1 exists"; found when a test ran before
    this file's). The environment is left as the user set it."""
    import mlflow

    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's artefacts go to ./mlruns
    for store in ("first", "second"):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / store}.db")
        result = CliRunner().invoke(main, ["train", "--data", str(voc_root), "--out", str(tmp_path / store),
                                           "--train-set", "train", "--size", "32", "--crop-size", "32",
                                           "--batch-size", "8", "--epochs", "1", "--no-pretrained",
                                           "--num-workers", "0", "--log", "mlflow", "--quiet"])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "MLFLOW_EXPERIMENT_ID" not in os.environ
        client = mlflow.MlflowClient(f"sqlite:///{tmp_path / store}.db")
        (logged,) = client.search_runs([client.get_experiment_by_name("fastseg").experiment_id])
        assert logged.info.status == "FINISHED" and logged.info.run_name == store
