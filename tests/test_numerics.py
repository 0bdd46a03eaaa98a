"""safe_divide: the quotient where defined, the declared fill elsewhere, and finite gradients everywhere."""
import torch

from cam_lib.numerics import safe_divide
from cam_lib.runtime import model_device


def test_safe_divide_fills_where_the_denominator_is_zero():
    numerator, denominator = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 0.0, -4.0])
    assert torch.equal(safe_divide(numerator, denominator), torch.tensor([0.5, 0.0, -0.75]))
    assert torch.equal(safe_divide(numerator, denominator, fill=torch.tensor([9.0, 8.0, 7.0])),
                       torch.tensor([0.5, 8.0, -0.75]))


def test_safe_divide_takes_the_defined_mask_from_the_caller():
    numerator, denominator = torch.tensor([1.0, 1.0]), torch.tensor([1e-9, 2.0])
    assert torch.equal(safe_divide(numerator, denominator, fill=-1.0, defined=denominator.abs() > 1e-6),
                       torch.tensor([-1.0, 0.5]))


def test_safe_divide_has_finite_gradients_at_zero_denominators():
    denominator = torch.tensor([0.0, 2.0], requires_grad=True)
    safe_divide(torch.ones(2), denominator).sum().backward()
    assert torch.isfinite(denominator.grad).all() and denominator.grad[0] == 0


def test_model_device_follows_parameters_and_falls_back_for_parameter_free_models():
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    meta = torch.device("meta")
    assert model_device(torch.nn.ReLU(), default=meta) == meta
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")
