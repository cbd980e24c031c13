import pytest
import torch
from torch import nn

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.patch import Patch, stored_payload_bytes


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_diff_finds_only_changed_tensors():
    model = make_model()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[2].weight[0, 0] += 1.0
    patch = Patch.diff(base, model)
    assert list(patch.tensors) == ["2.weight"]


def test_apply_and_revert_round_trip_is_exact(tmp_path):
    model = make_model()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    new_weight = base["0.weight"] + 1e-7 * torch.randn_like(base["0.weight"])
    patch = Patch({"0.weight": new_weight}, {"method": "test"})
    patch.save(tmp_path / "p.safetensors")
    loaded = Patch.load(tmp_path / "p.safetensors")
    assert loaded.metadata == {"method": "test"}

    inverse = loaded.apply(model)
    assert torch.equal(model.state_dict()["0.weight"], new_weight)
    inverse.apply(model)
    for name, value in model.state_dict().items():
        assert torch.equal(value, base[name]), name


def test_stored_payload_is_the_tensor_bytes(tmp_path):
    model = make_model()
    patch = Patch({"2.weight": model[2].weight.detach().clone()}, {"layer": "2.weight"})
    path = tmp_path / "p.safetensors"
    patch.save(path)
    assert stored_payload_bytes(path) == 8 * 3 * 4 == patch.payload_bytes
    assert path.stat().st_size > stored_payload_bytes(path)  # the header is not counted


def test_shape_mismatch_is_a_clear_error():
    model = make_model()
    with pytest.raises(UnlearnBenchError, match="0.weight.*shape"):
        Patch({"0.weight": torch.zeros(2, 2)}).apply(model)
