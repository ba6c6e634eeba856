import numpy as np
import pytest
import torch
from torchvision.models import resnet50

from ssp_detect.data.preprocess import normalize
from ssp_detect.models import CheckpointError, create_model, get_spec, list_models, load_model, register_model
from ssp_detect.models.checkpoint import save_checkpoint
from tests.reference.official import OfficialSSP


def test_registry_lists_the_paper_models_and_refuses_duplicates():
    names = list_models()
    assert {"ssp", "resnet50-baseline", "ssp-gn", "ssp-native-gn"} <= set(names)
    assert get_spec("ssp").paper and get_spec("ssp").input == "patch" and get_spec("resnet50-baseline").input == "image"
    with pytest.raises(ValueError, match="already registered"):
        register_model(get_spec("ssp"))
    with pytest.raises(KeyError, match="Unknown model 'nope'"):
        get_spec("nope")


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_its_input_to_one_logit(name):
    spec = get_spec(name)
    size = spec.patch_size if spec.input == "patch" else spec.image_size
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2,) and torch.isfinite(out).all()


def _official_state(tmp_path, wrap=None):
    torch.manual_seed(0)
    ref = OfficialSSP().eval()
    # Non-trivial BatchNorm statistics, so eval-mode differences would show.
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = ref.state_dict()
    if wrap == "state_dict":
        state = {"state_dict": state}
    elif wrap == "module":
        state = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / "official.pth"
    torch.save(state, path)
    return ref, path


@pytest.mark.parametrize("wrap", [None, "state_dict", "module"])
def test_official_checkpoint_loads_and_gives_the_official_logit_negated(tmp_path, rng, wrap):
    ref, path = _official_state(tmp_path, wrap)
    loaded = load_model(path)
    assert loaded.name == "ssp" and loaded.source == "official"
    patches = torch.from_numpy(rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8))
    x = normalize(patches, get_spec("ssp").mean, get_spec("ssp").std)
    with torch.no_grad():
        ours = loaded.model(x)
        official = ref(x).squeeze(1)  # log-odds of real
    torch.testing.assert_close(ours, -official, atol=1e-5, rtol=0)
    # Same decisions: official P(real) >= 0.5 <=> our p_fake <= 0.5.
    assert ((torch.sigmoid(official) >= 0.5) == (torch.sigmoid(ours) <= 0.5)).all()


def test_crafted_head_decides_as_known(tmp_path):
    ref, _ = _official_state(tmp_path)
    state = ref.state_dict()
    state["disc.fc.weight"] = torch.zeros(1, 2048)
    state["disc.fc.bias"] = torch.tensor([5.0])  # official: log-odds of REAL = 5 -> surely real
    torch.save(state, tmp_path / "real.pth")
    loaded = load_model(tmp_path / "real.pth")
    with torch.no_grad():
        p_fake = torch.sigmoid(loaded.model(torch.zeros(1, 3, 32, 32))).item()
    assert p_fake == pytest.approx(1 / (1 + np.exp(5)), rel=1e-6)


def test_our_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    net = create_model("ssp-native-gn").eval()
    save_checkpoint(
        tmp_path / "c.pt",
        {"model": "ssp-native-gn", "state_dict": net.state_dict(), "threshold": 0.3, "metrics": {"val": {"acc": 0.9}}},
    )
    loaded = load_model(tmp_path / "c.pt")
    assert loaded.name == "ssp-native-gn" and loaded.threshold == 0.3 and loaded.meta["metrics"]["val"]["acc"] == 0.9
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net(x))


def test_bad_weights_files_give_one_sentence(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_model(tmp_path / "junk.pt")
    torch.save({"disc.fc.weight": torch.zeros(1, 10), "disc.fc.bias": torch.zeros(1)}, tmp_path / "small.pt")
    with pytest.raises(CheckpointError, match="does not fit model"):
        load_model(tmp_path / "small.pt")


def test_backbone_weights_from_a_local_torchvision_file(tmp_path):
    torch.manual_seed(2)
    tv = resnet50(weights=None)  # 1000 classes, as ImageNet weights would be
    torch.save(tv.state_dict(), tmp_path / "r50.pth")
    model = create_model("ssp", backbone_weights=tmp_path / "r50.pth")
    torch.testing.assert_close(model.disc.layer3[2].conv2.weight, tv.layer3[2].conv2.weight)
    assert model.disc.fc.weight.shape == (1, 2048)
    torch.save({"foo": torch.zeros(3)}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="does not look like a torchvision ResNet"):
        create_model("ssp", backbone_weights=tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="'ssp-cooc' has no ResNet backbone"):
        create_model("ssp-cooc", backbone_weights=tmp_path / "r50.pth")
