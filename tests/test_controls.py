"""The controls: maps at CAM resolution that go through the CAM's upsampling and normalisation."""
import pytest
import torch

from cam_lib import controls, maps

EVIDENCE = torch.zeros(3, 16, 16)
EVIDENCE[:, 4:8, 2:10] = 1


def test_every_control_is_a_normalised_map_of_the_image_size():
    for name in controls.CONTROLS:
        saliency = controls.saliency(name, EVIDENCE, (4, 4))
        assert saliency.shape == (3, 16, 16) and saliency.min() >= 0 and saliency.max() <= 1, name


def test_oracle_is_the_evidence_pooled_to_cam_cells_then_upsampled_like_a_cam():
    cam = controls.oracle(EVIDENCE, torch.arange(3), (4, 4), 0)
    assert torch.allclose(cam[0], EVIDENCE[0].view(4, 4, 4, 4).mean((1, 3)))
    assert torch.equal(controls.saliency("oracle", EVIDENCE, (4, 4)), maps.saliency(cam, (16, 16)))
    inside = controls.saliency("oracle", EVIDENCE, (4, 4))[EVIDENCE.bool()].mean()
    outside = controls.saliency("oracle", EVIDENCE, (4, 4))[~EVIDENCE.bool()].mean()
    assert inside > 3 * outside


def test_random_is_seeded_by_image_and_seed_only():
    first = controls.saliency("random", EVIDENCE, (4, 4), image_ids=torch.tensor([5, 6, 7]), seed=1)
    again = controls.saliency("random", torch.zeros(3, 16, 16), (4, 4), image_ids=torch.tensor([5, 6, 7]), seed=1)
    assert torch.equal(first, again)
    shifted = controls.saliency("random", EVIDENCE[:2], (4, 4), image_ids=torch.tensor([6, 7]), seed=1)
    assert torch.equal(first[1:], shifted)
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(first, controls.saliency("random", EVIDENCE, (4, 4), torch.tensor([5, 6, 7]), seed=2))


def test_centre_peaks_in_the_middle_and_constant_is_the_all_zero_map():
    centre = controls.saliency("centre", EVIDENCE, (8, 8))[0]
    assert centre[7:9, 7:9].min() > 0.9 and centre[0, 0] == 0
    assert torch.allclose(centre, centre.flip(0)) and torch.allclose(centre, centre.T)
    assert torch.equal(controls.saliency("constant", EVIDENCE, (4, 4)), torch.zeros(3, 16, 16))


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="unknown control"):
        controls.saliency("perfect", EVIDENCE, (4, 4))
    with pytest.raises(ValueError, match="evidence must be masks"):
        controls.saliency("oracle", EVIDENCE[0], (4, 4))
