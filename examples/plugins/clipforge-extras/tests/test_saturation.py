"""saturation: per-image chroma penalty."""

import pytest
import torch
from clipforge_extras import Saturation
from pydantic import ValidationError


def sat(**options):
    return Saturation(Saturation.Options(**options))


def test_grey_is_free_and_pure_colour_costs_most():
    grey = torch.full((1, 3, 8, 8), 0.3)
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 1.0
    values = sat()(torch.cat([grey, red]))
    assert values.shape == (2,)
    assert values.tolist() == pytest.approx([0.0, 1.0])


def test_target_is_the_chroma_that_costs_nothing():
    half_red = torch.zeros(1, 3, 8, 8)
    half_red[:, 0] = 0.5
    assert sat(target=0.5)(half_red).item() == pytest.approx(0.0)
    assert sat(target=0.2)(half_red).item() == pytest.approx(0.3)


def test_each_image_is_penalised_on_its_own():
    images = torch.rand(3, 3, 8, 8)
    together = sat(target=0.1)(images)
    alone = torch.cat([sat(target=0.1)(images[i : i + 1]) for i in range(3)])
    assert torch.allclose(together, alone)


def test_a_gradient_step_makes_images_greyer():
    images = torch.rand(2, 3, 8, 8, requires_grad=True)
    before = sat()(images)
    before.sum().backward()
    with torch.no_grad():
        after = sat()(images - 0.05 * images.grad)
    assert (after < before).all()


def test_defaults_and_validation():
    assert Saturation.Options().weight == 0.1
    with pytest.raises(ValidationError):
        Saturation.Options(target=2)
    with pytest.raises(ValidationError):
        Saturation.Options(taget=0.2)
