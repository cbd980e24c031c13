"""The attack contract of the worked attack plugin on the micro CLIP: ``pytest examples/test_my_attack.py``."""

import pytest

from examples import my_attack
from unlearnbench.testing import attack_checks


@pytest.mark.parametrize("check", list(attack_checks(my_attack.Noise, {"scales": "0.1", "draws": "1"},
                                                     kinds=("clip",))), ids=lambda c: c.name)
def test_noise_keeps_the_attack_contract(check):
    check()
