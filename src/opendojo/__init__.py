"""OpenDojo: Tesla's Dojo training system in software.

Pillars (each a subpackage with a small public API in its ``__init__``):
``numerics`` (CFloat), ``nn`` (CFloat training), ``data`` (video data engine),
``models`` and ``train`` (FSD-style network and trainer), ``hw`` and ``sim``
(hardware as data and the performance simulator), ``report`` (plots, HTML).
"""

__version__ = "0.1.0"
