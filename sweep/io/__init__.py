"""Datasets and their stores: the contract (``schema``, no JAX), zarr stores (``zarr_store``),
provenance, ``sweep show``'s summary (``describe``) and netCDF export."""
