"""unlearnbench: compare machine-unlearning methods on foundation models.

Methods live in ``unlearnbench.methods`` and suites in ``unlearnbench.benchmarks``, one file each;
importing either package registers all of its members.
"""

__version__ = "0.1.0"
