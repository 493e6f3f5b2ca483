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
