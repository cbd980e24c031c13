"""The contract checks of the worked plugin: ``pytest examples/`` (one test per check)."""

from examples import my_method
from unlearnbench.testing import parametrize_with_checks


@parametrize_with_checks(my_method.Mine, settings={"steps": "20"})
def test_mine_keeps_the_method_contract(check):
    check()
