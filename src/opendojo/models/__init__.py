"""opendojo.models: the FSD-style video networks (and the reference workloads).

Plain ``nn.Module``s with no knowledge of precision, data or hardware.
"""

from opendojo.models.fsd import PRESETS, FSDConfig, FSDNet, example_inputs, fsd_net

__all__ = ["PRESETS", "FSDConfig", "FSDNet", "example_inputs", "fsd_net"]
