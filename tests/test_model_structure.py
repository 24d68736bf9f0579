"""The model knows no data set (issue #25): a network is never built without the caller's class
count (what `fastseg.model` may import is a rule of tests/test_architecture.py)."""

import pytest

from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel


def test_model_config_needs_the_class_count():
    with pytest.raises(TypeError, match="num_classes"):
        ModelConfig()
    assert ModelConfig(num_classes=3).num_classes == 3


def test_network_needs_its_config():
    with pytest.raises(TypeError, match="config"):
        SegmentationModel()
    network = SegmentationModel(ModelConfig(num_classes=4, decoder_channels=(8, 8, 8, 8, 8)))
    assert network.head.out_channels == 4
