"""Federated alignment on Flower: sites keep their rows and features; only head weights travel.

Library only (no CLI): `FederationConfig`, `run_federation` (simulation engine), the Flower
`client_app` / `server_app` for deployment, partitioning and the per-parameter aggregation.
Importing this package does not import Flower; the submodules that need it do.
"""

from __future__ import annotations

from crossalign.federate.config import (
    FederationConfig,
    load_federation_config,
    parse_partition,
    parse_site_modalities,
)

__all__ = ["FederationConfig", "load_federation_config", "parse_partition", "parse_site_modalities"]
