"""The shipped models: they load, reach their accuracy on fresh scenes, and the trainer still runs."""
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

import cam_lib
from cam_lib import data, zoo


@pytest.mark.parametrize("name, floor", [("shapes-vgg", 0.95), ("shapes-resnet", 0.95)])
def test_classifiers_reach_their_accuracy_on_fresh_scenes(name, floor):
    loaded = zoo.load(name, torch.device("cpu"))
    scenes = data.make_shape_scenes(400, seed=12345)  # a seed never used in training
    assert zoo.accuracy(loaded.model, (scenes.images, scenes.labels)) >= floor
    assert not loaded.model.training and loaded.layer in dict(loaded.model.named_modules())


def test_vqa_reaches_its_accuracy_on_fresh_scenes():
    loaded = zoo.load("vqa-basic", torch.device("cpu"))
    scenes = data.make_vqa_scenes(400, seed=12345)
    assert zoo.accuracy(loaded.model, (scenes.images, scenes.questions, scenes.answers)) >= 0.85
    assert not loaded.model.training and all(p.requires_grad for p in loaded.model.parameters())  # explainable


def test_heads_have_the_structure_the_book_relies_on():
    resnet, vgg = zoo.load("shapes-resnet", torch.device("cpu")), zoo.load("shapes-vgg", torch.device("cpu"))
    images = data.make_shape_scenes(2, seed=0).images
    cam_lib.explain(resnet.model, images, resnet.layer, "cam")  # GAP + linear: CAM applies
    with pytest.raises(ValueError, match="global average pooling"):
        cam_lib.explain(vgg.model, images, vgg.layer, "cam")  # a nonlinear head
    assert cam_lib.Explainer(vgg.model, vgg.layer).split.additive is not None


def test_training_script_runs(tmp_path):
    summary = zoo.train("shapes-resnet", out=tmp_path, smoke=True)
    assert (tmp_path / "shapes-resnet.pt").exists() and (tmp_path / "shapes-resnet.csv").exists()
    assert 0 <= summary["held_out_accuracy"] <= 1


def test_unknown_model_lists_the_names():
    with pytest.raises(ValueError, match="shapes-vgg"):
        zoo.load("shapes-alexnet")


def test_torchvision_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="never downloads") as error:
        zoo.load("torchvision:resnet18")
    assert str(tmp_path / "checkpoints") in str(error.value)


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Build models without initialising their weights: every registered parameter moves to the meta device.

    ``with torch.device("meta")`` would be simpler, but RegNet computes its widths with tensors and fails.
    """
    register = nn.Module.register_parameter

    def on_meta(module: nn.Module, name: str, param) -> None:
        register(module, name, None if param is None else nn.Parameter(param.to("meta"), param.requires_grad))

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def test_every_torchvision_classifier_has_a_layer():
    import torchvision
    conventional = {"resnet18": "layer4", "vgg16": "features.29", "densenet121": "features.norm5",
                    "mobilenet_v2": "features.18", "efficientnet_b0": "features.8",
                    "regnet_y_400mf": "trunk_output.block4", "shufflenet_v2_x1_0": "conv5", "mnasnet1_0": "layers.16",
                    "googlenet": "inception5b", "inception_v3": "Mixed_7c", "squeezenet1_1": "features.12",
                    "alexnet": "features.11", "convnext_tiny": "features.7", "swin_t": "features.7",
                    "vit_b_16": "encoder.layers.encoder_layer_11.ln_1"}
    for name in torchvision.models.list_models(module=torchvision.models):
        with parameters_on_meta(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # googlenet and inception_v3 warn about their initialisation
            model = torchvision.models.get_model(name, weights=None)
        layer = zoo.torchvision_layer(model)
        assert layer in dict(model.named_modules()) and layer == conventional.get(name, layer), name
        assert zoo.torchvision_reshape(model) == {"vit": "vit", "swi": "channels-last"}.get(name[:3]), name


@pytest.mark.parametrize("name, size", [("regnet_y_400mf", 64), ("shufflenet_v2_x0_5", 64), ("mnasnet0_5", 64),
                                        ("googlenet", 64), ("inception_v3", 80), ("squeezenet1_1", 64)])
def test_new_torchvision_layers_are_spatial_maps(name, size):
    import torchvision
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.get_model(name, weights=None).eval()
    layer = zoo.torchvision_layer(model)
    assert layer in dict(cam_lib.spatial_layers(model, torch.randn(1, 3, size, size)))


def test_vqa_training_keeps_the_pretrained_convolutions(tmp_path, monkeypatch):
    pretrained, pretrain_encoder = {}, zoo.pretrain_encoder

    def recording(model, *args):
        losses = pretrain_encoder(model, *args)
        pretrained.update({name: value.clone() for name, value in model.state_dict().items()})
        return losses

    monkeypatch.setattr(zoo, "pretrain_encoder", recording)
    summary = zoo.train("vqa-basic", out=tmp_path, smoke=True)
    assert len(summary["pretrain_losses"]) == 1 and summary["frozen"] == ["features"]
    saved = torch.load(tmp_path / "vqa-basic.pt")
    unchanged = {name for name, value in pretrained.items() if torch.equal(saved[name], value.to(saved[name].dtype))}
    assert {name for name in pretrained if name.startswith("features.")} <= unchanged  # batch-norm statistics too
    assert "image_fc.0.weight" not in unchanged  # the rest of the image encoder learns from the questions


def test_scene_layout_names_each_object_in_its_cell():
    scenes = data.make_vqa_scenes(50, seed=3)
    layout = zoo.scene_layout(scenes)
    cell_size = data.IMAGE_SIZE // 4
    for n in range(50):
        for shape, colour, (x, y) in zip(scenes.object_shapes[n].tolist(), scenes.object_colours[n].tolist(),
                                         scenes.object_centres[n].tolist()):
            if shape >= 0:
                cell = int(x // cell_size) + 4 * int(y // cell_size)
                assert layout[n, cell] == 1 + shape * len(data.VQA_COLOURS) + colour
    assert (layout > 0).sum(1).tolist() == (scenes.object_shapes >= 0).sum(1).tolist()
    counts = zoo.scene_counts(scenes)
    for n in range(50):
        pairs = [(s, c) for s, c in zip(scenes.object_shapes[n].tolist(), scenes.object_colours[n].tolist()) if s >= 0]
        assert counts[n].tolist() == [pairs.count((s, c)) for s in range(len(data.VQA_SHAPES))
                                      for c in range(len(data.VQA_COLOURS))]


@pytest.mark.parametrize("name", ["lookalike-vgg", "lookalike-resnet"])
def test_lookalike_models_are_about_as_sure_as_imagenet_models(name):
    found = zoo.calibration(name, 1000, zoo.TARGET_SEED)  # a seed never used in training or tuning
    assert 0.75 <= found["accuracy"] <= 0.92
    assert 0.5 <= found["median_true_class_probability"] <= 0.95
    assert 0 <= found["ece"] < 0.15 and found["above_0.99"] < 0.5
    assert zoo.load(name).classes == data.LOOKALIKE_CLASSES


def test_shape_models_are_saturated():
    assert zoo.calibration("shapes-resnet", 400, zoo.TARGET_SEED)["median_true_class_probability"] > 0.99


def test_expected_calibration_error_by_hand():
    confidence = torch.tensor([0.95, 0.95, 0.55, 0.55])
    correct = torch.tensor([True, True, True, False])
    # bins of width 1/15: {0.95, 0.95} is 100 % right at 95 % confidence, {0.55, 0.55} 50 % right at 55 %
    assert zoo.expected_calibration_error(confidence, correct) == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)


def test_explainers_and_entries_are_made_once():
    assert zoo.explainer("shapes-vgg") is zoo.explainer("shapes-vgg")
    assert zoo.explainer("shapes-vgg").model is zoo.loaded("shapes-vgg").model
