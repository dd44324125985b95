"""opendojo.hw — hardware as data: ``specs/*.toml`` (Dojo node … ExaPOD, GPUs, host) and a loader that
derives every total from the parts."""

from opendojo.hw.quantity import Quantity
from opendojo.hw.show import describe
from opendojo.hw.system import (
    Device,
    System,
    cache_dir,
    list_parts,
    list_systems,
    load_system,
    total,
    uncertain_quantities,
)

__all__ = ["Device", "Quantity", "System", "cache_dir", "describe", "list_parts", "list_systems",
           "load_system", "total", "uncertain_quantities"]
