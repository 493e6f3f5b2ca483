"""The experiment's typed configuration: validation messages, identity on resume, versions."""

from __future__ import annotations

import pytest

from lse.config import CONFIG_SCHEMA_VERSION, ExperimentConfig, WorkerOptions
from lse.errors import ConfigError


def test_defaults_are_the_papers():
    c = ExperimentConfig()
    assert (c.steps, c.batch_size, c.momentum, c.weight_decay, c.initial_learning_rate) == (25_600, 50, 0.9, 1e-4, 0.1)
    assert c.selection == "tournament" and c.inheritance is True and c.validation_size == 5000


def test_json_round_trip_is_exact():
    c = ExperimentConfig(dataset="cifar10", steps=100, mutation_probabilities={"identity": 1.0}, max_flops=1e12)
    assert ExperimentConfig.from_json(c.to_json()) == c


@pytest.mark.parametrize(
    "data, names",
    [
        ({"steps": 0}, "steps"),
        ({"dataset": "imagenet"}, "dataset"),
        ({"selection": "best"}, "selection"),
        ({"population_size": 1}, "population_size"),
        ({"colour": "red"}, "colour"),
        ({"mutation_probabilities": {"grow_wings": 1.0}}, "grow_wings"),
        ({"mutation_probabilities": {"identity": 0.0}}, "positive sum"),
    ],
)
def test_invalid_values_name_the_field(data, names):
    with pytest.raises(ConfigError) as e:
        ExperimentConfig.parse(data, "experiment.json")
    msg = str(e.value)
    assert names in msg and msg.startswith("experiment.json: ") and "\n" not in msg


def test_unknown_mutation_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="valid: alter_learning_rate, identity"):
        ExperimentConfig.parse({"mutation_probabilities": {"nope": 1.0}})


def test_newer_schema_is_refused_with_what_to_do():
    with pytest.raises(ConfigError, match="newer lse.*upgrade lse"):
        ExperimentConfig.parse({"schema_version": CONFIG_SCHEMA_VERSION + 1})


def test_not_json_says_where_and_what_to_do():
    with pytest.raises(ConfigError, match=r"experiment.json is not valid JSON .*line 1.*--force"):
        ExperimentConfig.from_json('{"steps": 10', "experiment.json")


def test_identity_ignores_stop_conditions_only():
    a = ExperimentConfig(steps=100)
    assert a.differences(a.model_copy(update={"max_individuals": 10, "max_hours": 2.0, "max_flops": 1e9})) == []
    assert a.differences(ExperimentConfig(steps=200)) == ["steps: 100 -> 200"]
    assert a.differences(ExperimentConfig(steps=100, inheritance=False)) == ["inheritance: True -> False"]


def test_worker_options_are_validated_too():
    assert WorkerOptions.parse({"threads": 2}).threads == 2
    with pytest.raises(ConfigError, match="device"):
        WorkerOptions.parse({"device": "tpu"})


def test_flip_defaults_per_data_set_and_can_be_set():
    # issue 20: garments survive a mirror, digits do not
    assert ExperimentConfig().flip is True  # fashion-mnist
    assert ExperimentConfig(dataset="cifar10").flip is True and ExperimentConfig(dataset="cifar100").flip is True
    assert ExperimentConfig(dataset="mnist").flip is False
    assert ExperimentConfig(flip=False).flip is False and ExperimentConfig(dataset="mnist", flip=True).flip is True
    # written explicitly, so a file says what its experiment did
    assert '"flip": true' in ExperimentConfig().to_json()


def test_flip_agrees_with_the_data_sets_own_default():
    from lse.nn.data import SPECS

    for name, spec in SPECS.items():
        assert ExperimentConfig(dataset=name).flip is spec.flip, name


def test_an_experiment_json_from_before_the_flip_option_opens_as_it_ran():
    # schema 1 had no flip field and never mirrored grey images: a resumed experiment keeps that
    old = ExperimentConfig(steps=100).model_dump(mode="json")
    del old["flip"]
    old["schema_version"] = 1
    import json

    c = ExperimentConfig.from_json(json.dumps(old))
    assert c.flip is False and c.steps == 100
    old["dataset"] = "cifar10"
    assert ExperimentConfig.from_json(json.dumps(old)).flip is True
    assert c.differences(ExperimentConfig.parse({**c.model_dump(), "max_individuals": 5})) == []


def test_insert_channels_must_be_positive_counts():
    assert ExperimentConfig(insert_channels=[8, 16]).insert_channels == [8, 16]
    assert ExperimentConfig().insert_channels is None  # the paper
    for bad in ([], [0, 8]):
        with pytest.raises(ConfigError, match="insert_channels"):
            ExperimentConfig.parse({"insert_channels": bad})


def test_the_step_schedule_picks_steps_by_the_minute_a_child_starts():
    c = ExperimentConfig(steps=500, steps_schedule=[(15, 1000), (25, 2000)])
    assert [c.steps_at(m) for m in (0, 14.99, 15, 24.99, 25, 600)] == [500, 500, 1000, 1000, 2000, 2000]
    assert ExperimentConfig(steps=7).steps_at(600) == 7  # the paper: no schedule
    assert ExperimentConfig.from_json(c.model_dump_json()) == c  # saved and read back whole
    for bad in ([], [(5, 100), (5, 200)], [(9, 100), (5, 200)], [(-1, 100)], [(1, 0)]):
        with pytest.raises(ConfigError, match="steps_schedule"):
            ExperimentConfig.parse({"steps_schedule": bad})


def test_presets_are_plain_fields_and_paper_is_the_default():
    from lse.config import PRESETS, apply_preset

    assert apply_preset("paper", {"steps": 5}) == {"steps": 5}
    quick = apply_preset("quick", {})
    assert quick == PRESETS["quick"] and quick  # plain ExperimentConfig fields
    ExperimentConfig.parse(quick)
    key = next(iter(quick))
    assert apply_preset("quick", {key: "mine"})[key] == "mine"  # what the user gives wins
    with pytest.raises(ConfigError, match="paper, quick"):
        apply_preset("fast", {})


@pytest.mark.parametrize("name", ["paper", "quick", "hour"])
def test_every_preset_is_a_valid_configuration(name):
    from lse.config import PRESETS, apply_preset

    cfg = ExperimentConfig.parse(apply_preset(name, {}))
    for key, value in PRESETS[name].items():
        assert getattr(cfg, key) == value  # saved as the plain fields it sets
